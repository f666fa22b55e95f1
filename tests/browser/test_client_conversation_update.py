"""ChatManager.updateConversation and its `conversationUpdated` event, end to end in
Chromium: one page on the socket (`conversation:update`), one on the HTTP fallback
(`PATCH /conversations/{id}`, the rename of the other arriving by the long-poll);
one declaration in client/src/operations.js serves both."""

from __future__ import annotations

from typing import Any

from tests.browser.support import Browser, ChatServer, Page
from tests.browser.test_demo_page import STATE_IS, page_errors, sign_in

LISTEN = """() => { window.updates = [];
  window.demo.manager.on('conversationUpdated', (data) => window.updates.push(data)); }"""
RENAME = """async ({ conversationId, title }) =>
  window.demo.manager.updateConversation(conversationId, { title })"""
UPDATED = "(count) => window.updates.length >= count && window.updates"


async def rename(page: Page, conversation_id: int, title: str) -> Any:
    return await page.eval(RENAME, {"conversationId": conversation_id, "title": title})


async def test_a_rename_over_the_socket_and_one_over_rest_reach_the_other_page(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    alice = await browser.page("alice")
    bob = await browser.page("bob", blockable=True)
    await bob.block(websocket=True, polling=True)  # no /socket.io/ at all: REST only
    alice_me = await sign_in(alice, chat_server, "Alice")
    bob_me = await sign_in(bob, chat_server, "Bob", "fallbackAfterErrors=2")
    assert await bob.wait_for(STATE_IS, ["fallback"]) == {"state": "fallback", "transport": "http"}
    assert await alice.eval(STATE_IS, ["online"]) is not False
    lobby = await alice.eval("() => window.demo.active")
    await alice.eval(LISTEN)
    await bob.eval(LISTEN)

    # Alice on the socket: the ack's fields; Bob hears it from his long-poll.
    assert await rename(alice, lobby, "Tea room") == {
        "conversationId": lobby, "title": "Tea room", "changed": True}
    [heard] = await bob.wait_for(UPDATED, 1)
    assert heard == {"conversationId": lobby, "title": "Tea room", "updatedBy": alice_me["userId"]}

    # Bob over REST: the same reply; Alice's socket, in the room, hears it.
    assert await rename(bob, lobby, "Coffee room") == {
        "conversationId": lobby, "title": "Coffee room", "changed": True}
    [heard] = await alice.wait_for(UPDATED, 1)
    assert heard == {"conversationId": lobby, "title": "Coffee room", "updatedBy": bob_me["userId"]}
    renamed_at = f"/api/messenger/conversations/{lobby}"
    patched = [url for url in await bob.requests() if url.endswith(renamed_at)]
    assert patched, "Bob's rename went over REST"
    # A REST request has no socket to leave out: Bob's long-poll brings his own too.
    assert (await bob.wait_for(UPDATED, 2))[1] == heard

    # The same title again changes nothing, and no one is told: the next update
    # Bob hears is the rename after it.
    assert await rename(alice, lobby, "Coffee room") == {
        "conversationId": lobby, "title": "Coffee room", "changed": False}
    await rename(alice, lobby, "Tea room")
    titles = [update["title"] for update in await bob.wait_for(UPDATED, 3)]
    assert titles == ["Tea room", "Coffee room", "Tea room"]
    assert len(await alice.eval("() => window.updates")) == 1
    assert await page_errors(alice) == [] and await page_errors(bob) == []
