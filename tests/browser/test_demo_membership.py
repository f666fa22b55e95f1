"""The demo page keeps its conversation list from ChatManager's `conversationAdded`
and `conversationRemoved` (the server's `conversation:added` / `conversation:removed`),
in a real Chromium against the server as a process: it lists conversations once,
at sign-in, and never again on a timer."""

from __future__ import annotations

import asyncio
import json
import urllib.request

from tests.browser.support import Browser, ChatServer
from tests.browser.test_demo_page import alice_and_bob, page_errors, start_conversation_with

KEY = "browser-main-site-key-0123456789abcdef0123"
LISTING = "/api/messenger/conversations"
# The page used to list conversations again every 3 s: this is longer.
OLD_TIMER_S = 3.0
LISTED_TITLES = "() => [...document.querySelectorAll('#conversations li .title')]" \
    ".map((element) => element.textContent)"


def server_api(server: ChatServer, method: str, path: str, body: object = None) -> int:
    request = urllib.request.Request(
        server.url + "/api/server" + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"X-API-Key": KEY, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        status: int = response.status
        return status


async def test_the_list_follows_conversation_events_without_a_polling_timer(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.env["API_KEY"] = KEY
    alice, bob = await alice_and_bob(browser, chat_server)

    # Alice starts a conversation with Bob (REST): Bob's list shows it, opened.
    await start_conversation_with(alice, "Bob")
    await bob.wait_for(f"() => ({LISTED_TITLES})().includes('Alice & Bob')")
    conversation = await bob.eval(
        "() => [...window.demo.conversations.values()]"
        ".find((entry) => entry.title === 'Alice & Bob').id")

    # Long after the old timer would have fired, Bob's page has still listed its
    # conversations only once: at sign-in.
    await asyncio.sleep(OLD_TIMER_S + 1.0)
    listings = [url for url in await bob.requests() if url.endswith(LISTING)]
    assert len(listings) == 1, listings

    # The main site removes Bob: the conversation leaves his list, not Alice's.
    me = (await bob.eval("() => window.demo.me"))["userId"]
    assert server_api(chat_server, "DELETE", f"/conversations/{conversation}/members/{me}") == 200
    await bob.wait_for(f"() => !({LISTED_TITLES})().includes('Alice & Bob')")
    assert "Alice & Bob" in await alice.eval(LISTED_TITLES)

    # ...and adds him back: it is listed again, from the event alone.
    assert server_api(chat_server, "POST", f"/conversations/{conversation}/members",
                      {"userId": me}) == 200
    await bob.wait_for(f"() => ({LISTED_TITLES})().includes('Alice & Bob')")
    listings = [url for url in await bob.requests() if url.endswith(LISTING)]
    assert len(listings) == 1, listings
    assert await page_errors(alice) == [] and await page_errors(bob) == []
