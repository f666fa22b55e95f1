"""/api/server/* through the real server, on both backends: the main site posts
system messages and changes memberships with X-API-Key, and the changes reach
live sockets and long-polls at once."""

from __future__ import annotations

import aiohttp
import pytest

from ecigdis_ws.settings import SettingsError, load_settings
from tests.support import RunningServer
from tests.transport.conftest import room
from tests.transport.rest_support import SERVER_API_KEY as KEY
from tests.transport.rest_support import Rest


async def test_without_an_api_key_setting_the_server_routes_are_not_found(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    rest = Rest(server, session)
    conversation = await server.conversation(1)
    for reply in (
        await rest.server_call("POST", f"/conversations/{conversation}/messages", KEY,
                               {"messageId": "s1", "text": "hello"}),
        await rest.server_call("POST", f"/conversations/{conversation}/members", KEY,
                               {"userId": 2}),
        await rest.server_call("DELETE", f"/conversations/{conversation}/members/1", KEY),
        await rest.server_call("DELETE", f"/conversations/{conversation}/members/1", ""),
    ):
        assert (reply.status, reply.code) == (404, "NOT_FOUND")
    assert await server.chat.storage.conversations.member_ids(conversation) == [1]


async def test_a_missing_or_wrong_api_key_is_refused_with_401(keyed: Rest) -> None:
    conversation = await keyed.server.conversation(1)
    path = f"/conversations/{conversation}/members"
    missing = await keyed.server_call("POST", path, None, {"userId": 2})
    assert (missing.status, missing.code) == (401, "UNAUTHENTICATED")
    for wrong in ("", KEY[:-1], KEY + "x", "Bearer " + KEY):
        reply = await keyed.server_call("POST", path, wrong, {"userId": 2})
        assert (reply.status, reply.code) == (401, "AUTH_FAILED"), wrong
    user_token = await keyed.request("POST", "/api/server" + path, user=1, json={"userId": 2})
    assert user_token.status == 401  # a user's JWT is no API key
    assert await keyed.server.chat.storage.conversations.member_ids(conversation) == [1]


async def test_a_system_message_is_stored_once_and_fanned_out_to_the_room(
    keyed: Rest,
) -> None:
    conversation, (alice, bob) = await room(keyed.server, 1, 2)
    path = f"/conversations/{conversation}/messages"
    first = await keyed.server_call("POST", path, KEY,
                                    {"messageId": "notice-7", "text": "Shop closes at 5"})
    assert first.status == 201
    assert first.body["status"] == "sent" and first.body["messageId"] == "notice-7"
    for client in (alice, bob):
        [new] = await client.wait_for("message:new")
        assert new["id"] == first.body["id"]
        assert (new["userId"], new["senderName"]) == (0, "System")
    again = await keyed.server_call("POST", path, KEY,
                                    {"messageId": "notice-7", "text": "Shop closes at 5"})
    assert (again.status, again.body["duplicate"], again.body["id"]) == (
        200, True, first.body["id"])
    page = await keyed.get(f"/conversations/{conversation}/messages", user=1)
    assert [m["id"] for m in page.body["messages"]] == [first.body["id"]]
    assert len(bob.received("message:new")) == 1


async def test_a_system_message_may_name_its_sender(keyed: Rest) -> None:
    conversation, (alice,) = await room(keyed.server, 1)
    reply = await keyed.server_call(
        "POST", f"/conversations/{conversation}/messages", KEY,
        {"messageId": 3, "text": "Approved", "userId": 42, "senderName": "HR bot"},
    )
    assert reply.status == 201 and reply.body["messageId"] == 3
    [new] = await alice.wait_for("message:new")
    assert (new["userId"], new["senderName"], new["messageId"]) == (42, "HR bot", 3)


async def test_a_system_message_reaches_a_long_poll(keyed: Rest) -> None:
    conversation = await keyed.server.conversation(1)
    cursor = (await keyed.poll(1)).body["cursor"]
    await keyed.server_call("POST", f"/conversations/{conversation}/messages", KEY,
                            {"messageId": "p1", "text": "poll me"})
    events = (await keyed.poll(1, cursor)).body["events"]
    assert [(e["event"], e["data"]["text"]) for e in events] == [("message:new", "poll me")]


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/conversations/999999/messages", {"messageId": "x", "text": "y"}),
    ("POST", "/conversations/999999/members", {"userId": 2}),
    ("DELETE", "/conversations/999999/members/2", None),
])
async def test_server_routes_on_a_conversation_that_does_not_exist_are_not_found(
    keyed: Rest, method: str, path: str, body: object
) -> None:
    reply = await keyed.server_call(method, path, KEY, body)
    assert (reply.status, reply.code) == (404, "NOT_FOUND")


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("POST", "/messages", {"text": "no id"}),
    ("POST", "/messages", {"messageId": "a", "text": ""}),
    ("POST", "/messages", {"messageId": "a", "text": "x", "userId": "bob"}),
    ("POST", "/messages", {"messageId": "a", "text": "x", "senderName": ""}),
    ("POST", "/members", {"userId": 0}),
    ("POST", "/members", {}),
    ("DELETE", "/members/bob", None),
])
async def test_server_routes_refuse_bad_input(
    keyed: Rest, method: str, suffix: str, body: object
) -> None:
    conversation = await keyed.server.conversation(1)
    reply = await keyed.server_call(method, f"/conversations/{conversation}{suffix}", KEY, body)
    assert (reply.status, reply.code) == (400, "INVALID_PAYLOAD")


async def test_an_added_member_can_join_at_once(keyed: Rest) -> None:
    server = keyed.server
    conversation, (alice,) = await room(server, 1)
    newcomer = await server.client(2)
    join = {"conversationId": conversation}
    assert (await newcomer.call("conversation:join", join))["error"]["code"] == "FORBIDDEN"
    path = f"/conversations/{conversation}/members"
    added = await keyed.server_call("POST", path, KEY, {"userId": "2"})
    assert added.status == 200
    assert added.body == {"conversationId": conversation, "userId": 2, "changed": True}
    assert (await keyed.server_call("POST", path, KEY, {"userId": 2})).body["changed"] is False
    assert (await newcomer.call("conversation:join", join))["ok"]
    [announced] = await alice.wait_for("member:added")
    assert announced == {"userId": 2, "conversationId": conversation, "addedBy": None}


async def test_a_removed_member_is_told_and_leaves_the_room_at_once(keyed: Rest) -> None:
    server = keyed.server
    conversation, (alice, bob) = await room(server, 1, 2)
    # bob's membership is remembered by the membership cache after this send
    assert (await bob.call("message:send", {
        "conversationId": conversation, "text": "still here", "messageId": "b1"}))["ok"]
    removed = await keyed.server_call("DELETE", f"/conversations/{conversation}/members/2", KEY)
    assert removed.body == {"conversationId": conversation, "userId": 2, "changed": True}
    for client in (alice, bob):
        [told] = await client.wait_for("member:removed")
        assert told == {"userId": 2, "conversationId": conversation, "removedBy": None}
    await server.wait_until(
        lambda: not server.chat.fanout.in_room(bob.sio.get_sid(), f"conversation:{conversation}")
    )
    await alice.call("message:send",
                     {"conversationId": conversation, "text": "bob is gone", "messageId": "a1"})
    refused = await bob.call("message:send", {
        "conversationId": conversation, "text": "let me in", "messageId": "b2"})
    assert refused["error"]["code"] == "FORBIDDEN"
    # alice's message was fanned out before her ack, so before bob's send; one
    # socket's packets arrive in order, so had it reached bob, it would be here.
    assert [m["text"] for m in bob.received("message:new")] == []
    again = await keyed.server_call("DELETE", f"/conversations/{conversation}/members/2", KEY)
    assert again.body["changed"] is False


async def test_a_removed_members_long_poll_stops_seeing_the_conversation(keyed: Rest) -> None:
    conversation = await keyed.server.conversation(1, 2)
    other = await keyed.server.conversation(1, 2)
    cursor = (await keyed.poll(2)).body["cursor"]
    await keyed.server_call("DELETE", f"/conversations/{conversation}/members/2", KEY)
    await keyed.send(1, conversation, "after removal", "x1")
    await keyed.send(1, other, "still shared", "x2")
    events = (await keyed.poll(2, cursor)).body["events"]
    assert [(e["event"], e["data"].get("text")) for e in events] == [
        ("conversation:removed", None), ("message:new", "still shared")]


def test_production_refuses_a_short_api_key() -> None:
    base = {"NODE_ENV": "production", "JWT_SECRET": "s" * 40}
    with pytest.raises(SettingsError) as refused:
        load_settings({**base, "API_KEY": "short"}, dotenv_path=None)
    assert any(problem.startswith("API_KEY") for problem in refused.value.problems)
    assert load_settings({**base, "API_KEY": KEY}, dotenv_path=None).api_key == KEY
    assert load_settings(base, dotenv_path=None).api_key is None  # off is fine
