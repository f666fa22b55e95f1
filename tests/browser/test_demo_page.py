"""The demo page and ChatManager in a real Chromium, against the server as a process.

Each test opens the demo page (`/`) in two browser contexts, signs in as two people
through the page's form (POST /dev/token), and works the page as a person would:
typing, pressing Enter, clicking reactions. What the pages show is read from the DOM.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.browser.support import ARTIFACTS, Browser, ChatServer, Page

SHOWN_MESSAGES = """() => [...document.querySelectorAll('#messages li.message[data-id]')]
  .map((li) => ({ id: Number(li.dataset.id), text: li.querySelector('.text').textContent,
  sender: li.querySelector('.sender').textContent }))"""
PENDING_TEXTS = """() => [...document.querySelectorAll('#messages li.message.pending')]
  .map((li) => li.querySelector('.text').textContent)"""
HAS_TEXTS = """(texts) => {
  const shown = [...document.querySelectorAll('#messages li.message[data-id] .text')]
    .map((element) => element.textContent);
  return texts.every((text) => shown.includes(text)) ? shown : false;
}"""
STATE_IS = """(states) => {
  const badge = document.querySelector('#state');
  return states.includes(badge.dataset.state)
    ? { state: badge.dataset.state, transport: badge.dataset.transport } : false;
}"""


async def sign_in(page: Page, server: ChatServer, name: str, query: str = "") -> Any:
    """Open the demo page, type a name, press Sign in; wait until the chat shows."""
    await page.goto(f"{server.url}/{'?' + query if query else ''}")
    await page.fill("#name", name)
    await page.click("#sign-in")
    return await page.wait_for(
        """(name) => !document.querySelector('#chat').hidden && window.demo.me
            && window.demo.me.name === name && document.querySelector('#conversation-title')
              .textContent !== '' && window.demo.me""",
        name,
    )


async def send(page: Page, text: str) -> None:
    await page.fill("#composer", text)
    await page.press("#composer", "Enter")


async def react(page: Page, message_id: int, emoji: str) -> None:
    """Point at the message, as a person with a mouse does, and click `emoji` in the
    reaction picker that shows."""
    item = f"#messages li[data-id='{message_id}']"
    await page.hover(item)
    await page.click(f"{item} .picker button.react[data-emoji='{emoji}']")


async def shown(page: Page) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = await page.eval(SHOWN_MESSAGES)
    return messages


async def wait_for_texts(page: Page, *texts: str) -> list[str]:
    found: list[str] = await page.wait_for(HAS_TEXTS, list(texts))
    return found


async def delivered_twice(page: Page) -> list[int]:
    """Message ids ChatManager handed to the page more than once (none, it drops repeats)."""
    ids: list[int] = await page.eval("() => window.demo.delivered")
    return sorted({id_ for id_ in ids if ids.count(id_) > 1})


async def page_errors(page: Page) -> list[str]:
    return [line for line in await page.logs() if line.startswith("pageerror")]


async def alice_and_bob(browser: Browser, chat_server: ChatServer) -> tuple[Page, Page]:
    """The server started; Alice's page and Bob's, each signed in."""
    chat_server.start()
    alice = await browser.page("alice")
    bob = await browser.page("bob")
    await sign_in(alice, chat_server, "Alice")
    await sign_in(bob, chat_server, "Bob")
    return alice, bob


ONLINE_ENTRIES = "#online li:not(.note)"


async def start_conversation_with(page: Page, name: str) -> None:
    """Click `name` in the page's online list: a conversation of the two (REST)."""
    await page.wait_for(f"() => [...document.querySelectorAll('{ONLINE_ENTRIES}')]"
                        f".some((li) => li.textContent === '{name}')")
    await page.eval(f"() => [...document.querySelectorAll('{ONLINE_ENTRIES}')]"
                    f".find((li) => li.textContent === '{name}').click()")


async def test_two_pages_chat_with_typing_read_receipts_and_reactions(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    alice = await browser.page("alice")
    bob = await browser.page("bob")
    alice_me = await sign_in(alice, chat_server, "Alice")
    bob_me = await sign_in(bob, chat_server, "Bob")
    assert alice_me["userId"] != bob_me["userId"]

    # Who is online: each page lists the other (user:online / presence:request).
    await alice.wait_for("() => [...document.querySelectorAll('#online li')]"
                         ".some((li) => li.textContent === 'Bob')")
    await bob.wait_for("() => [...document.querySelectorAll('#online li')]"
                       ".some((li) => li.textContent === 'Alice')")

    # Typing: Alice types key by key; Bob's page says so until the message is sent.
    await alice.type("#composer", "Hello Bob, from Alice 👋")
    await bob.wait_for("() => document.querySelector('#typing').textContent"
                       " === 'Alice is typing…'")
    # 24 keystrokes in about half a second: one typing:start on the wire (throttled).
    starts = [frame for frame in await alice.frames_sent() if '"typing:start"' in frame]
    assert len(starts) == 1, starts
    await alice.press("#composer", "Enter")
    await wait_for_texts(bob, "Hello Bob, from Alice 👋")
    await bob.wait_for("() => document.querySelector('#typing').textContent === ''")
    [hello] = await shown(bob)
    assert hello["sender"] == "Alice"

    # Read receipt: Bob's page had the message in view, so it marked it read.
    seen = f"#messages li[data-id='{hello['id']}'] .seen-by"
    await alice.wait_for(f"() => document.querySelector(\"{seen}\")?.textContent"
                         " === 'Seen by Bob'")

    # Reactions: Bob clicks 👍 under Alice's message; Alice's page counts it.
    await react(bob, hello["id"], "👍")
    chip = f"#messages li[data-id='{hello['id']}'] .reaction[data-emoji='👍']"
    await alice.wait_for(f"() => document.querySelector(\"{chip}\")?.dataset.count === '1'")
    await bob.wait_for(f"() => document.querySelector(\"{chip}\")?.classList.contains('mine')")

    # Bob answers; both pages show the same conversation, in order.
    await send(bob, "Hi Alice!")
    await wait_for_texts(alice, "Hello Bob, from Alice 👋", "Hi Alice!")
    await wait_for_texts(bob, "Hi Alice!")
    alice_view, bob_view = await shown(alice), await shown(bob)
    assert alice_view == bob_view
    assert [(m["sender"], m["text"]) for m in alice_view] == [
        ("Alice", "Hello Bob, from Alice 👋"), ("Bob", "Hi Alice!"),
    ]
    # ...and Bob's reply, read by Alice, carries her receipt on Bob's page.
    reply = alice_view[1]["id"]
    await bob.wait_for(f"() => document.querySelector(\"#messages li[data-id='{reply}'] "
                       ".seen-by\")?.textContent === 'Seen by Alice'")

    # A picture of the demo page for people to look at (README: artifacts/browser/).
    path = await alice.screenshot(ARTIFACTS / "demo-page.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert await page_errors(alice) == [] and await page_errors(bob) == []
    # No CDN, nothing from outside: every request went to the server under test.
    origins = (chat_server.url + "/", f"ws://127.0.0.1:{chat_server.port}/")
    requests = await alice.requests()
    assert any(url.startswith(chat_server.url + "/client/chat-manager.js") for url in requests)
    assert [url for url in requests if not url.startswith(origins)] == []


async def test_a_conversation_started_from_the_online_list_reaches_the_other_page(
    browser: Browser, chat_server: ChatServer
) -> None:
    alice, bob = await alice_and_bob(browser, chat_server)
    # Alice clicks Bob in her online list: a conversation of the two (REST), opened.
    await start_conversation_with(alice, "Bob")
    await alice.wait_for("() => document.querySelector('#conversation-title').textContent"
                         " === 'Alice & Bob'")
    await send(alice, "just between us")
    # Bob's page finds the new conversation with one unread message, and shows it.
    item = "#conversations li"
    unread = await bob.wait_for(
        f"() => [...document.querySelectorAll('{item}')].find((li) => "
        "li.querySelector('.title').textContent === 'Alice & Bob')"
        "?.querySelector('.unread').textContent")
    assert unread == "1"
    await bob.eval(f"() => [...document.querySelectorAll('{item}')].find((li) => "
                   "li.querySelector('.title').textContent === 'Alice & Bob').click()")
    await wait_for_texts(bob, "just between us")
    # The lobby did not get it.
    await bob.eval(f"() => [...document.querySelectorAll('{item}')].find((li) => "
                   "li.querySelector('.title').textContent === 'Lobby').click()")
    await bob.wait_for("() => document.querySelector('#conversation-title').textContent"
                       " === 'Lobby'")
    assert await shown(bob) == []


async def test_a_send_whose_acknowledgement_was_lost_is_retried_with_the_same_message_id(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    alice = await browser.page("alice", blockable=True)
    bob = await browser.page("bob")
    await sign_in(alice, chat_server, "Alice", "ackTimeoutMs=1000")
    await sign_in(bob, chat_server, "Bob")
    await alice.drop_acks(1)  # the server stores it, but its answer never reaches Alice
    await send(alice, "stored once, though sent twice")
    await wait_for_texts(bob, "stored once, though sent twice")
    await alice.wait_for("() => document.querySelectorAll('#messages li.message.pending')"
                         ".length === 0 && document.querySelectorAll('#messages li[data-id]')"
                         ".length === 1")
    sends = [json.loads(frame[frame.index("["):])[1]
             for frame in await alice.frames_sent() if '"message:send"' in frame]
    assert len(sends) == 2, sends
    assert sends[0] == sends[1]  # the same messageId, text and conversation
    with sqlite3.connect(chat_server.workdir / "chat.db") as db:
        [(copies,)] = db.execute("SELECT COUNT(*) FROM chat_messages WHERE text = ?",
                                 ("stored once, though sent twice",)).fetchall()
    assert copies == 1
    assert [m["text"] for m in await shown(bob)] == ["stored once, though sent twice"]
    assert await delivered_twice(alice) == [] and await delivered_twice(bob) == []


def store_behind_the_servers_back(database: Path, lobby: int, texts: list[str]) -> None:
    """Messages stored while both pages are cut off, as another node (or the main
    site) would store them: no live event will ever announce them to the pages;
    only a rejoin with `since` brings them."""
    now_ms = int(time.time() * 1000)
    with sqlite3.connect(database) as db:
        for number, text in enumerate(texts, start=1):
            db.execute(
                "INSERT INTO chat_messages (conversation_id, sender_id, sender_name, "
                "client_message_id, text, created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (lobby, "999", "Carol", f"carol-{number}", text, now_ms),
            )


async def test_after_a_server_restart_both_pages_catch_up_with_no_gap_and_no_duplicate(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    alice = await browser.page("alice")
    bob = await browser.page("bob")
    # Reconnect within a second; no HTTP fallback, so the socket's rejoin is what is tested.
    query = "reconnectDelayMax=1000&fallbackAfterErrors=1000"
    await sign_in(alice, chat_server, "Alice", query)
    await sign_in(bob, chat_server, "Bob", query)
    await send(alice, "before the restart, from Alice")
    await wait_for_texts(bob, "before the restart, from Alice")
    await send(bob, "before the restart, from Bob")
    await wait_for_texts(alice, "before the restart, from Bob")

    chat_server.stop()
    for page in (alice, bob):
        await page.wait_for(STATE_IS, ["offline"])
    # While it is down: Alice writes (queued in her page), and two messages reach
    # the database by another way.
    await send(alice, "written by Alice while the server was down")
    assert await alice.wait_for(PENDING_TEXTS) == ["written by Alice while the server was down"]
    lobby = await alice.eval("() => window.demo.active")  # the Lobby, shown since sign-in
    store_behind_the_servers_back(chat_server.workdir / "chat.db", lobby, [
        "stored while the pages were cut off, 1", "stored while the pages were cut off, 2",
    ])

    chat_server.start()  # the same port and the same SQLite file
    expected = [
        "before the restart, from Alice",
        "before the restart, from Bob",
        "stored while the pages were cut off, 1",
        "stored while the pages were cut off, 2",
        "written by Alice while the server was down",
    ]
    views = []
    for page in (alice, bob):
        await page.wait_for(STATE_IS, ["online"], timeout_ms=15000)
        await wait_for_texts(page, *expected)
        await page.wait_for(f"() => document.querySelectorAll('#messages li.message')"
                            f".length === {len(expected)}")
        views.append(await shown(page))
    alice_view, bob_view = views
    # No gap, no duplicate, in the server's order, the same on both pages.
    assert [message["text"] for message in alice_view] == expected
    ids = [message["id"] for message in alice_view]
    assert ids == sorted(set(ids))
    assert bob_view == alice_view
    assert await alice.eval(PENDING_TEXTS) == []
    assert await delivered_twice(alice) == [] and await delivered_twice(bob) == []

    # The queued message was stored exactly once, though it may have been tried twice.
    with sqlite3.connect(chat_server.workdir / "chat.db") as db:
        [(copies,)] = db.execute(
            "SELECT COUNT(*) FROM chat_messages WHERE text = ?",
            ("written by Alice while the server was down",),
        ).fetchall()
    assert copies == 1
    assert await page_errors(alice) == [] and await page_errors(bob) == []


async def test_with_the_socket_blocked_pages_chat_through_the_http_fallback(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    query = "reconnectDelayMax=1000&fallbackAfterErrors=2"
    # Alice is behind a proxy that kills websockets: socket.io-client stays on polling.
    alice = await browser.page("alice", blockable=True)
    await alice.block(websocket=True)
    # Bob's network lets no /socket.io/ request through at all.
    bob = await browser.page("bob", blockable=True)
    await bob.block(websocket=True, polling=True)
    await sign_in(alice, chat_server, "Alice", query)
    await sign_in(bob, chat_server, "Bob", query)
    assert await alice.wait_for(STATE_IS, ["online"]) == {"state": "online", "transport": "polling"}
    assert await bob.wait_for(STATE_IS, ["fallback"]) == {"state": "fallback", "transport": "http"}

    # Socket (polling) to HTTP long-poll, and REST send to socket.
    await send(alice, "to Bob, who has no socket")
    await wait_for_texts(bob, "to Bob, who has no socket")
    await send(bob, "from Bob, over REST")
    await wait_for_texts(alice, "to Bob, who has no socket", "from Bob, over REST")
    hello, answer = await shown(alice)
    # Bob read Alice's message (REST read) and reacts to it (REST reaction).
    await alice.wait_for(f"() => document.querySelector(\"#messages li[data-id='{hello['id']}']"
                         " .seen-by\")?.textContent === 'Seen by Bob'")
    await react(bob, hello["id"], "❤️")
    await alice.wait_for(f"() => document.querySelector(\"#messages li[data-id='{hello['id']}']"
                         " .reaction[data-emoji='❤️']\")?.dataset.count === '1'")
    # Alice's reaction reaches Bob through the long-poll.
    await react(alice, answer["id"], "😂")
    await bob.wait_for(f"() => document.querySelector(\"#messages li[data-id='{answer['id']}']"
                       " .reaction[data-emoji='😂']\")?.dataset.count === '1'")

    # Bob's network lets the socket through again: his page goes back to it.
    await bob.block(websocket=False, polling=False)
    await bob.wait_for(STATE_IS, ["online"], timeout_ms=15000)
    await send(alice, "to Bob, on his socket again")
    await wait_for_texts(bob, "to Bob, on his socket again")
    bob_view = await shown(bob)
    assert [message["text"] for message in bob_view] == [
        "to Bob, who has no socket", "from Bob, over REST", "to Bob, on his socket again",
    ]
    assert await delivered_twice(alice) == [] and await delivered_twice(bob) == []
    assert await page_errors(alice) == [] and await page_errors(bob) == []


ONLINE_HAS = """(name) => [...document.querySelectorAll('#online li')]
  .some((li) => li.textContent === name)"""
TYPING_SAYS = "(text) => document.querySelector('#typing').textContent === text"


async def test_on_the_http_fallback_pages_show_who_is_typing_and_who_is_online(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    query = "reconnectDelayMax=1000&fallbackAfterErrors=2"
    alice = await browser.page("alice")
    # Bob's network lets no /socket.io/ request through: REST and the long-poll only.
    bob = await browser.page("bob", blockable=True)
    await bob.block(websocket=True, polling=True)
    await sign_in(alice, chat_server, "Alice", query)
    await sign_in(bob, chat_server, "Bob", query)
    assert await bob.wait_for(STATE_IS, ["fallback"]) == {"state": "fallback", "transport": "http"}

    # Who is online: Bob's page asks GET /presence; Bob, only polling, is online for Alice.
    await bob.wait_for(ONLINE_HAS, "Alice")
    await alice.wait_for(ONLINE_HAS, "Bob")

    # Alice types on her socket: Bob's page hears it through the long-poll.
    await alice.type("#composer", "Hello Bob")
    await bob.wait_for(TYPING_SAYS, "Alice is typing…")
    await alice.press("#composer", "Enter")
    await wait_for_texts(bob, "Hello Bob")
    await bob.wait_for(TYPING_SAYS, "")

    # Bob types over REST (POST .../typing): Alice's page says so.
    await bob.type("#composer", "Hi Alice")
    await alice.wait_for(TYPING_SAYS, "Bob is typing…")
    await bob.press("#composer", "Enter")
    await wait_for_texts(alice, "Hi Alice")
    await alice.wait_for(TYPING_SAYS, "")
    assert await page_errors(alice) == [] and await page_errors(bob) == []


# (ChatManager keeps its socket.io-client socket in _socket: its id is the session's)
SOCKET_ID = "() => window.demo.manager._socket.id"


async def test_an_expired_token_is_replaced_through_get_token_without_losing_the_session(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.env["JWT_LEEWAY_S"] = "0"
    chat_server.start()
    alice = await browser.page("alice")
    bob = await browser.page("bob")
    await sign_in(alice, chat_server, "Alice", "ttl=2")  # tokens that last 2 s
    await sign_in(bob, chat_server, "Bob")
    socket_id = await alice.eval(SOCKET_ID)
    # The server says TOKEN_EXPIRED; the page's getToken asks /dev/token again and
    # the ChatManager authenticates the same socket with it. (On a slow machine the
    # 2 s may have run out already: authentications may be 2 by now.)
    await alice.wait_for("() => window.demo.authentications >= 2", timeout_ms=10000)
    await send(alice, "after my token was refreshed")
    await wait_for_texts(bob, "after my token was refreshed")
    assert await alice.eval("() => document.querySelector('#chat-error').textContent") == ""
    assert await alice.eval(STATE_IS, ["online"]) is not False
    assert await alice.eval(SOCKET_ID) == socket_id  # the session was never lost
