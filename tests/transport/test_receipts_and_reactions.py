"""message:read (receipts that never move back) and message:react (toggling)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.support import RunningServer
from tests.transport.conftest import room
from tests.transport.rest_support import Rest


async def sent(client: Any, conversation: int, message_id: str) -> int:
    ack = await client.call(
        "message:send", {"conversationId": conversation, "text": "x", "messageId": message_id}
    )
    return int(ack["id"])


async def test_read_advances_and_announces_a_receipt(server: RunningServer) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    first = await sent(alice, conversation, "a")
    reply = await bob.call("message:read", {"conversationId": conversation, "messageId": first})
    assert reply == {"ok": True, "advanced": True}
    [receipt] = await alice.wait_for("message:read-receipt")
    assert receipt == {"messageId": first, "userId": 2, "conversationId": conversation,
                       "readAt": "2027-01-15T08:00:00.000Z"}
    assert await server.chat.storage.receipts.last_read(conversation, 2) == first


async def test_read_never_moves_back(server: RunningServer) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    first = await sent(alice, conversation, "a")
    second = await sent(alice, conversation, "b")
    await bob.call("message:read", {"conversationId": conversation, "messageId": second})
    back = await bob.call("message:read", {"conversationId": conversation, "messageId": first})
    same = await bob.call("message:read", {"conversationId": conversation, "messageId": second})
    assert back == same == {"ok": True, "advanced": False}
    assert await server.chat.storage.receipts.last_read(conversation, 2) == second
    await sent(bob, conversation, "sentinel")
    await alice.wait_for("message:new")
    assert len(alice.received("message:read-receipt")) == 1


async def test_read_of_a_message_from_another_conversation_is_not_found(
    server: RunningServer,
) -> None:
    conversation, (alice,) = await room(server, 1)
    other, (_,) = await room(server, 1)
    foreign = await sent(alice, other, "elsewhere")
    for message_id in (foreign, 999_999):
        reply = await alice.call("message:read",
                                 {"conversationId": conversation, "messageId": message_id})
        assert reply["error"]["code"] == "NOT_FOUND"
    [error, _] = await alice.wait_for("error", count=2)
    assert error["event"] == "message:read"
    assert await server.chat.storage.receipts.last_read(conversation, 1) is None


async def test_read_by_non_member_is_forbidden(server: RunningServer) -> None:
    conversation, (alice,) = await room(server, 1)
    message_id = await sent(alice, conversation, "a")
    mallory = await server.client(9)
    reply = await mallory.call("message:read",
                               {"conversationId": conversation, "messageId": message_id})
    assert reply["error"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize("bad", [None, "x", 0, -5, True, 1.5])
async def test_read_with_bad_message_id_is_invalid_payload(server: RunningServer, bad: Any) -> None:
    conversation, (alice,) = await room(server, 1)
    reply = await alice.call("message:read", {"conversationId": conversation, "messageId": bad})
    assert reply["error"]["code"] == "INVALID_PAYLOAD"


async def test_react_toggles_and_announces_each_change(server: RunningServer) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    message_id = await sent(alice, conversation, "a")
    react = {"conversationId": conversation, "messageId": message_id, "emoji": "👍🏽"}
    assert await bob.call("message:react", react) == {"ok": True, "action": "added"}
    assert await bob.call("message:react", react) == {"ok": True, "action": "removed"}
    events = await alice.wait_for("message:reaction", count=2)
    assert events == [
        {"messageId": message_id, "emoji": "👍🏽", "userId": 2,
         "conversationId": conversation, "action": action}
        for action in ("added", "removed")
    ]
    assert await server.chat.storage.reactions.reactions(message_id) == []


async def test_reactions_are_per_user_and_emoji(server: RunningServer) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    message_id = await sent(alice, conversation, "a")
    for client, emoji in ((alice, "❤️"), (bob, "❤️"), (bob, "👨‍👩‍👧‍👦")):
        reply = await client.call("message:react", {
            "conversationId": conversation, "messageId": message_id, "emoji": emoji})
        assert reply["action"] == "added"
    assert sorted(await server.chat.storage.reactions.reactions(message_id)) == [
        (1, "❤️"), (2, "❤️"), (2, "👨‍👩‍👧‍👦")
    ]


async def test_react_to_missing_message_is_not_found(server: RunningServer) -> None:
    conversation, (alice,) = await room(server, 1)
    reply = await alice.call("message:react",
                             {"conversationId": conversation, "messageId": 4242, "emoji": "👍"})
    assert reply["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("emoji", [None, "", "   ", 7, "x" * 33, "\ud83d"])
async def test_react_with_bad_emoji_is_invalid_and_stores_nothing(
    server: RunningServer, emoji: Any
) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    message_id = await sent(alice, conversation, "a")
    reply = await bob.call("message:react",
                           {"conversationId": conversation, "messageId": message_id,
                            "emoji": emoji})
    assert reply["error"]["code"] == "INVALID_PAYLOAD"
    assert await server.chat.storage.reactions.reactions(message_id) == []
    await sent(bob, conversation, "sentinel")
    await alice.wait_for("message:new")
    assert alice.received("message:reaction") == []


GOOD_EMOJI = (
    "👍", "❤", "❤️", "👍🏽", "🖐🏿", "1️⃣", "#⃣", "🇫🇷", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "🏳️‍🌈", "👨‍👩‍👧‍👦",
    "🧑🏻‍🤝‍🧑🏼", "🏃🏽‍♀️", "❤️‍🔥", "👁️‍🗨️", "©️", "🫠",
)
BAD_EMOJI = (
    "\x00", "👍\x00", "<b>", "<script>alert(1)</script>", "a", "ok", "x" * 32, "1", "#",
    "é", "👍👍", "👍 ", " 👍", "🇫", "\u200d", "👍\u200d", "\u200d👍", "\ufe0f",
    "👍\ufe0e", "🏽", "\u202e👍", "a\u200db",
)


async def test_react_takes_one_emoji_grapheme_cluster_and_nothing_else(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    """The probe stored any 32-character string, NUL and markup included, and had
    it broadcast to the room as an emoji."""
    conversation, (alice, bob) = await room(server, 1, 2)
    message_id = await sent(alice, conversation, "a")
    at = {"conversationId": conversation, "messageId": message_id}
    refused = [(await bob.call("message:react", {**at, "emoji": bad}))["error"]["code"]
               for bad in BAD_EMOJI]
    assert refused == ["INVALID_PAYLOAD"] * len(BAD_EMOJI)
    rest = Rest(server, session)
    path = f"/conversations/{conversation}/messages/{message_id}/reactions"
    over_rest = await rest.post(path, user=2, json={"emoji": "<img src=x>\x00"})
    assert (over_rest.status, over_rest.code) == (400, "INVALID_PAYLOAD")
    assert await server.chat.storage.reactions.reactions(message_id) == []

    for good in GOOD_EMOJI:
        assert (await bob.call("message:react", {**at, "emoji": good}))["action"] == "added"
    assert (await rest.post(path, user=1, json={"emoji": "🇯🇵"})).body == {"action": "added"}
    reactions = await alice.wait_for("message:reaction", count=len(GOOD_EMOJI))
    assert [r["emoji"] for r in reactions] == list(GOOD_EMOJI)
    assert sorted(emoji for _, emoji in await server.chat.storage.reactions.reactions(
        message_id
    )) == (
        sorted([*GOOD_EMOJI, "🇯🇵"]))
