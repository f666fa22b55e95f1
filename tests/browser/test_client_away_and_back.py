"""One cursor (issue 28, docs/protocol.md "Away and back"): ChatManager keeps the
cursor of each join's answer and of each long-poll answer, and comes back with it,
so what changed while its page was away reaches the page: an edit, a deletion, a pin
and a rename, not only new messages. Back on the socket the rejoin replays them;
back on the HTTP fallback the long-poll, polled from the same cursor, carries them."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from tests.browser.chat_pages import ChatPage, alice_and_bob, page_errors
from tests.browser.support import Browser, ChatServer

POLL_CURSOR = re.compile(r"/api/messenger/poll\?(?:.*&)?cursor=([^&]*)")


async def away_and_back_setup(
    browser: Browser, chat_server: ChatServer, **alice_options: Any
) -> tuple[ChatPage, ChatPage, int, dict[str, Any], dict[str, Any]]:
    """Alice and Bob in a conversation Bob made; two of Bob's messages Alice has seen."""
    alice, bob, desk = await alice_and_bob(browser, chat_server, "Desk", **alice_options)
    keep = await bob.call("send", desk, "to keep")
    drop = await bob.call("send", desk, "to drop")
    await alice.message("to drop")
    return alice, bob, desk, keep, drop


async def change_everything(bob: ChatPage, desk: int, keep: Any, drop: Any) -> None:
    """What Bob does while Alice is away."""
    await bob.call("editMessage", desk, keep["id"], "kept, edited")
    await bob.call("deleteMessage", desk, drop["id"])
    await bob.call("pinMessage", desk, keep["id"])
    await bob.call("updateConversation", desk, {"title": "Front desk"})
    await bob.call("send", desk, "while you were away")


async def assert_all_four_reached(alice: ChatPage, bob: ChatPage, desk: int, keep: Any,
                                  drop: Any) -> None:
    [updated] = await alice.heard("messageUpdated")
    assert (updated["id"], updated["conversationId"], updated["text"]) == (
        keep["id"], desk, "kept, edited")
    [deleted] = await alice.heard("messageDeleted")
    assert (deleted["id"], deleted["deletedBy"]) == (drop["id"], bob.user_id)
    [pinned] = await alice.heard("messagePinned")
    assert (pinned["id"], pinned["pinnedBy"]) == (keep["id"], bob.user_id)
    [renamed] = await alice.heard("conversationUpdated")
    assert renamed == {"conversationId": desk, "title": "Front desk", "updatedBy": bob.user_id}
    await alice.message("while you were away")
    texts = [message["text"] for message in await alice.heard_so_far("message")]
    assert texts == ["to keep", "to drop", "while you were away"]  # each once


async def test_back_on_the_socket_the_rejoin_replays_what_changed_meanwhile(
    browser: Browser, chat_server: ChatServer
) -> None:
    alice, bob, desk, keep, drop = await away_and_back_setup(
        browser, chat_server, httpFallback=False)
    await alice.go_away()
    assert await alice.state_is("offline")
    await change_everything(bob, desk, keep, drop)
    await alice.come_back()
    await assert_all_four_reached(alice, bob, desk, keep, drop)

    # The rejoin named the cursor of the first join's answer (and no `since`).
    first, *rejoins = await alice.asked("conversation:join")
    assert first == {"conversationId": desk} and rejoins, rejoins
    # Both: the messages by id from the messages table, the other changes by cursor.
    assert set(rejoins[-1]) == {"conversationId", "since", "cursor"}
    assert rejoins[-1]["cursor"].isdigit()
    assert await page_errors(alice) == [] and await page_errors(bob) == []


async def test_back_on_the_http_fallback_the_long_poll_from_the_same_cursor_carries_it(
    browser: Browser, chat_server: ChatServer
) -> None:
    """Alice's socket goes and does not come back: her fallback polls from the cursor
    of her socket's join, not from "now" (her polls are held meanwhile, as a sleeping
    laptop's; a poll that asked for "now" would be held too, and miss the changes)."""
    alice, bob, desk, keep, drop = await away_and_back_setup(
        browser, chat_server, fallbackAfterErrors=2)
    await alice.page.stall_polls(True)
    await alice.go_away()
    assert await alice.state_is("fallback")
    deadline = time.monotonic() + 10
    while await alice.page.stall_polls(True) == 0:
        assert time.monotonic() < deadline, "Alice's fallback never polled"
        await asyncio.sleep(0.05)
    await change_everything(bob, desk, keep, drop)
    await alice.page.stall_polls(False)
    await assert_all_four_reached(alice, bob, desk, keep, drop)

    # Every poll named a cursor: none asked for "now".
    polls = [url for url in await alice.page.requests() if "/api/messenger/poll" in url]
    cursors = [match.group(1) if (match := POLL_CURSOR.search(url)) else "" for url in polls]
    assert cursors and all(cursor.isdigit() for cursor in cursors), polls
    assert await page_errors(alice) == [] and await page_errors(bob) == []


async def test_a_cursor_replay_cut_at_its_cap_pages_the_rest_from_history(
    browser: Browser, chat_server: ChatServer
) -> None:
    """More messages than REPLAY_MAX_MESSAGES while away: the rejoin's answer says
    `resync` (with `replayedUpTo`, the messages coming by `since`), the edit comes
    with the changes, and the messages past the cap come from REST history, each
    once and in order."""
    chat_server.env.update(REPLAY_MAX_MESSAGES="5")
    # Away without falling back: the socket is blocked, the REST API is there to page.
    alice, bob, desk, keep, _ = await away_and_back_setup(
        browser, chat_server, fallbackAfterErrors=1000, fallbackAfterMs=600_000)
    await alice.go_away()
    assert await alice.state_is("offline")
    await bob.call("editMessage", desk, keep["id"], "kept, edited")
    away = [f"away {number}" for number in range(8)]
    for text in away:
        await bob.call("send", desk, text)
    await alice.come_back()

    await alice.message(away[-1])
    [updated] = await alice.heard("messageUpdated")  # among the changes replayed
    assert updated["text"] == "kept, edited"
    texts = [message["text"] for message in await alice.heard_so_far("message")]
    assert texts == ["to keep", "to drop", *away]
    paged = [url for url in await alice.page.requests()
             if f"/conversations/{desk}/messages?since=" in url]
    assert paged, "the rest was not paged from history"
    assert await page_errors(alice) == [] and await page_errors(bob) == []
