"""ChatManager's offline queue keeps sends, edits and deletions in the order they were
made (issue 28): made while the page is offline, they go out once it is back, one at
a time; an edit or a deletion of a message still queued waits for its send's ack and
uses its server id; a deletion of a message never sent takes it out of the queue
without calling the server; a refusal for good (FORBIDDEN) ends that one alone."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.chat_pages import ChatPage, alice_and_bob, page_errors
from tests.browser.support import Browser, ChatServer

# Start the calls the moment the manager says it is offline (before any fallback can
# take them), in order; each outcome is kept in window.chat.calls under its key.
WHEN_OFFLINE = """(calls) => {
  const chat = window.chat;
  const stop = chat.manager.on('state', ({ state }) => {
    if (state !== 'offline') return;
    stop();
    for (const { key, method, args } of calls) {
      chat.calls[key] = chat.manager[method](...args).then(
        (value) => ({ ok: true, value }),
        (error) => ({ ok: false, code: error.code, chatError: error instanceof chat.ChatError }));
    }
    chat.pendingWhenQueued = chat.manager.pending.map((item) => item.text);
  });
}"""
QUEUED = "() => window.chat.pendingWhenQueued"
CHANGES = ("message", "messageUpdated", "messageDeleted")


def call(key: str, method: str, *args: Any) -> dict[str, Any]:
    return {"key": key, "method": method, "args": list(args)}


async def changes_heard(chat: ChatPage, conversation_id: int) -> list[tuple[str, Any]]:
    """(event, message id) of each message, edit and deletion heard there, in order."""
    return [(item["event"], item["data"]["id"]) for item in await chat.all_heard()
            if item["event"] in CHANGES and item["data"]["conversationId"] == conversation_id]


@pytest.mark.parametrize("back_on", ["socket", "http"])
async def test_sends_edits_and_deletions_made_offline_reach_the_server_in_order(
    browser: Browser, chat_server: ChatServer, back_on: str
) -> None:
    # Back on the socket (no fallback), or on the HTTP fallback (the socket stays blocked).
    options = {"httpFallback": False} if back_on == "socket" else {"fallbackAfterErrors": 3}
    alice, bob, shifts = await alice_and_bob(browser, chat_server, "Shifts", **options)
    first = await alice.call("send", shifts, "first")
    await bob.message("first")

    await alice.page.eval(WHEN_OFFLINE, [
        call("second", "send", shifts, "second", {"messageId": "m-second"}),
        call("edit second", "editMessage", shifts, {"messageId": "m-second"}, "second, edited"),
        call("edit first", "editMessage", shifts, first["id"], "first, edited"),
        call("delete first", "deleteMessage", shifts, first["id"]),
        call("third", "send", shifts, "third", {"messageId": "m-third"}),
        call("delete third", "deleteMessage", shifts, {"messageId": "m-third"}),
        call("fourth", "send", shifts, "fourth", {"messageId": "m-fourth"}),
    ])
    await alice.go_away()
    # The third was never sent: its deletion only took it out of the queue.
    assert await alice.page.wait_for(QUEUED) == ["second", "fourth"]
    assert await alice.settled("delete third") == {"ok": True, "value": {
        "id": None, "conversationId": shifts, "deletedBy": None, "deletedAt": None}}
    assert await alice.settled("third") == {"ok": False, "code": "CANCELLED", "chatError": True}
    if back_on == "socket":
        await alice.come_back()
    assert await alice.state_is("online" if back_on == "socket" else "fallback")

    second = await alice.settled("second")
    edit_second = await alice.settled("edit second")
    assert second["ok"] and edit_second["ok"], (second, edit_second)
    assert edit_second["value"]["id"] == second["value"]["id"]  # the id its send's ack gave
    assert edit_second["value"]["text"] == "second, edited"
    assert (await alice.settled("edit first"))["value"]["changed"] is True
    deleted = (await alice.settled("delete first"))["value"]
    assert (deleted["id"], deleted["deletedBy"]) == (first["id"], alice.user_id)
    fourth = (await alice.settled("fourth"))["value"]

    # Bob heard them in the order they were made, and nothing of the third.
    await bob.message("fourth")
    assert (await changes_heard(bob, shifts))[1:] == [
        ("message", second["value"]["id"]), ("messageUpdated", second["value"]["id"]),
        ("messageUpdated", first["id"]), ("messageDeleted", first["id"]),
        ("message", fourth["id"])]
    # The server has the first edited then deleted (a tombstone), the second edited.
    history = {message["id"]: message for message in await bob.call("history", shifts)}
    assert sorted(history) == [first["id"], second["value"]["id"], fourth["id"]]
    assert (history[first["id"]]["deleted"], history[first["id"]]["text"]) == (True, "")
    assert history[second["value"]["id"]]["text"] == "second, edited"
    assert "third" not in [data["text"] for data in await alice.asked("message:send")]
    statuses = [item["data"]["status"] for item in await alice.all_heard()
                if item["event"] == "outgoing" and item["data"]["text"] == "third"]
    assert statuses == ["queued", "cancelled"]
    assert await page_errors(alice) == [] and await page_errors(bob) == []


async def test_an_edit_and_a_deletion_wait_for_a_send_whose_ack_was_lost(
    browser: Browser, chat_server: ChatServer
) -> None:
    """A send tried once may be stored already: a deletion of it is not a cancel but
    waits behind its retry, as the edit does, and both use the id of the retry's ack."""
    alice, bob, shifts = await alice_and_bob(browser, chat_server, "Shifts", ackTimeoutMs=1500)
    await alice.page.drop_acks(1)  # the first try is stored, its ack lost
    await alice.start("draft", "send", shifts, "draft", {"messageId": "m-draft"})
    await alice.start("edit", "editMessage", shifts, {"messageId": "m-draft"}, "draft, edited")
    await bob.message("draft")  # stored by the first try
    await alice.start("delete", "deleteMessage", shifts, {"messageId": "m-draft"})

    draft = await alice.settled("draft")
    assert draft["ok"] and draft["value"]["duplicate"] is True  # the retry's ack
    edit = await alice.settled("edit")
    deleted = await alice.settled("delete")
    assert edit["ok"] and deleted["ok"], (edit, deleted)
    assert edit["value"]["id"] == deleted["value"]["id"] == draft["value"]["id"]
    [gone] = await bob.heard("messageDeleted")
    assert await changes_heard(bob, shifts) == [
        ("message", gone["id"]), ("messageUpdated", gone["id"]), ("messageDeleted", gone["id"])]
    [tombstone] = await bob.call("history", shifts)
    assert (tombstone["id"], tombstone["deleted"]) == (gone["id"], True)
    assert await page_errors(alice) == [] and await page_errors(bob) == []


async def test_an_edit_refused_for_good_ends_alone_and_what_follows_goes_on(
    browser: Browser, chat_server: ChatServer
) -> None:
    """Alice was removed from the conversation while her edit waited offline: it is
    refused FORBIDDEN once she is back, and her send behind it is stored."""
    alice, bob, shifts = await alice_and_bob(browser, chat_server, "Shifts", httpFallback=False)
    mine = await alice.call("send", shifts, "mine")
    await bob.message("mine")
    await bob.call("join", bob.lobby)
    await alice.page.eval(WHEN_OFFLINE, [
        call("edit", "editMessage", shifts, mine["id"], "mine, edited"),
        call("lobby", "send", alice.lobby, "after the refusal"),
    ])
    await alice.go_away()
    assert await alice.page.wait_for(QUEUED) == ["after the refusal"]
    await bob.call("removeMember", shifts, alice.user_id)
    await alice.come_back()

    assert await alice.settled("edit") == {"ok": False, "code": "FORBIDDEN", "chatError": True}
    assert (await alice.settled("lobby"))["ok"] is True
    await bob.message("after the refusal")
    [kept] = await bob.call("history", shifts)
    assert (kept["text"], kept.get("editedAt")) == ("mine", None)
    assert await page_errors(alice) == [] and await page_errors(bob) == []
