"""ChatManager in Chromium on its HTTP fallback, when its long-poll cursor has
become older than the server keeps the event log (EVENT_LOG_RETENTION_S): the
server answers `resync: true`, and the page catches up from REST history, so the
message sent while it was away shows up."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from tests.browser.support import Browser, ChatServer
from tests.browser.test_demo_page import (
    STATE_IS,
    delivered_twice,
    page_errors,
    send,
    shown,
    sign_in,
    wait_for_texts,
)

# The shortest retention the server allows with DB_TIMEOUT_MS at its 3000 default
# is its settle window, 8 s; the pruner then looks every 0.8 s.
RETENTION_S = 8
PRUNED_WITHIN_S = 20


def pruned_through(server: ChatServer) -> int:
    with sqlite3.connect(server.workdir / "chat.db") as db:
        row = db.execute("SELECT through_id FROM chat_event_log_pruned").fetchone()
    return int(row[0])


def last_event_id(server: ChatServer) -> int:
    with sqlite3.connect(server.workdir / "chat.db") as db:
        row = db.execute("SELECT MAX(id) FROM chat_events").fetchone()
    return int(row[0])


async def test_on_the_http_fallback_a_resync_catches_up_from_history(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.env.update(EVENT_LOG_RETENTION_S=str(RETENTION_S),
                           LONG_POLL_TIMEOUT_MS="1000")  # a held poll ends soon
    chat_server.start()
    query = "reconnectDelayMax=1000&fallbackAfterErrors=2"
    alice = await browser.page("alice")
    bob = await browser.page("bob", blockable=True)
    await bob.block(websocket=True, polling=True)  # no /socket.io/ at all: REST only
    await sign_in(alice, chat_server, "Alice", query)
    await sign_in(bob, chat_server, "Bob", query)
    assert await bob.wait_for(STATE_IS, ["fallback"]) == {"state": "fallback", "transport": "http"}
    await bob.eval("""() => { window.resyncs = [];
        window.demo.manager.on('resync', (data) => window.resyncs.push(data)); }""")
    await send(alice, "before Bob slept")
    await wait_for_texts(bob, "before Bob slept")

    # Bob's laptop sleeps: his next long-poll waits in the proxy, with his cursor.
    await bob.stall_polls(True)
    deadline = time.monotonic() + 10
    while await bob.stall_polls(True) == 0:
        assert time.monotonic() < deadline, "Bob's next poll never came"
        await asyncio.sleep(0.05)
    await send(alice, "while Bob slept")
    await wait_for_texts(alice, "while Bob slept")
    missed = last_event_id(chat_server)
    await asyncio.sleep(RETENTION_S)
    await send(alice, "as Bob wakes")  # newer than the retention: the one before can go
    await wait_for_texts(alice, "as Bob wakes")
    deadline = time.monotonic() + PRUNED_WITHIN_S
    while pruned_through(chat_server) < missed:
        assert time.monotonic() < deadline, "the server never pruned the event log"
        await asyncio.sleep(0.1)

    # He wakes up: the poll goes on with the old cursor and is answered resync.
    await bob.stall_polls(False)
    await wait_for_texts(bob, "before Bob slept", "while Bob slept", "as Bob wakes")
    assert len(await bob.eval("() => window.resyncs")) == 1
    assert [m["text"] for m in await shown(bob)] == [
        "before Bob slept", "while Bob slept", "as Bob wakes"]
    # and the poll goes on from the cursor of the resync answer.
    await send(alice, "after Bob woke")
    await wait_for_texts(bob, "after Bob woke")
    assert await bob.eval(STATE_IS, ["fallback"]) is not False
    assert await delivered_twice(bob) == []
    assert await page_errors(alice) == [] and await page_errors(bob) == []
