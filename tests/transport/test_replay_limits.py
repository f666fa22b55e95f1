"""Bounded replays through the real server (issue 25, point 4).

A `since: 0` join of 50,000 messages sent 14.7 MB at once (about 1 s of CPU);
the socket's PONGs were not read meanwhile, the heartbeat cut it, and the join
then failed in python-socketio's `basic_enter_room` for the gone sid, logged as
INTERNAL with a traceback. Now a join replays at most REPLAY_MAX_MESSAGES, its
answer says `resync: true` and `replayedUpTo` past that (the client pages the
rest from history), and a socket gone during its join gets a quiet UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import pytest

from ecigdis_ws.domain import StoredMessage
from ecigdis_ws.transport.socketio_overrides.managers import NAMESPACE
from ecigdis_ws.transport.socketio_overrides.server import SOCKET_SERVER
from tests.support import WAIT_S, RunningServer, errors_counted, server_log_problems

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]
POLLING = "/socket.io/?EIO=4&transport=polling"
CAP = 100
PROBLEM_LEVELS = ("[warning", "[error", "[critical")
SEEDED = 1500


async def seed(server: RunningServer, conversation: int, count: int) -> list[int]:
    """`count` messages of user 1, stored concurrently in batches (group commit
    writes each batch in a few transactions); their ids, ascending."""
    storage, ids = server.chat.storage, []
    for start in range(0, count, 100):
        results = await asyncio.gather(*(
            storage.messages.store_message(conversation, 1, "Alice", f"seed{i}", f"t{i}", i)
            for i in range(start, min(start + 100, count))
        ))
        ids.extend(result.message.id for result in results)
    return sorted(ids)


def gone(server: RunningServer, sid: str) -> Callable[[], bool]:
    """True once python-socketio has forgotten the socket (its disconnect handled)."""
    manager = server.app[SOCKET_SERVER].manager
    return lambda: manager.eio_sid_from_sid(sid, NAMESPACE) is None


def printed_problems(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Lines the server's own log (structlog, printed) wrote at WARNING or above,
    and any traceback."""
    output = capsys.readouterr()
    return [line for line in (output.out + output.err).splitlines()
            if "Traceback" in line or any(level in line for level in PROBLEM_LEVELS)]


def answered(server: RunningServer) -> Callable[[], bool]:
    """True once the join has failed, one way or the other."""
    return lambda: errors_counted(server, "UNAVAILABLE") + errors_counted(server, "INTERNAL") > 0


def pages_read_until(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, left: Callable[[], Any],
) -> list[list[StoredMessage]]:
    """Replay pages read from now on; on the first, the socket leaves (`left()`
    starts it) and the page is returned only once the server has forgotten it."""
    storage = server.chat.storage
    read, pages = storage.messages.messages_after, []

    async def read_while_leaving(
        conversation_id: int, after_id: int, limit: int
    ) -> list[StoredMessage]:
        page = await read(conversation_id, after_id, limit)
        pages.append(page)
        if len(pages) == 1:
            await left()
        return page

    monkeypatch.setattr(storage.messages, "messages_after", read_while_leaving)
    return pages


async def test_a_join_replays_at_most_replay_max_messages_and_says_where_to_page_from(
    make_server: ServerFactory, session: aiohttp.ClientSession,
) -> None:
    async with make_server(REPLAY_MAX_MESSAGES=str(CAP)) as server:
        conversation = await server.conversation(1, 2)
        ids = await seed(server, conversation, SEEDED)
        bob = await server.client(2)

        reply = await bob.call("conversation:join", {"conversationId": conversation, "since": 0})

        assert reply["ok"] and reply["resync"] is True and reply["replayedUpTo"] == ids[CAP - 1]
        # (frames arrive in the order sent: every replayed message came before the ack)
        assert [m["id"] for m in bob.received("message:new")] == ids[:CAP]
        # The rest is history's: the next page starts right after replayedUpTo.
        async with session.get(
            f"{server.url}/api/messenger/conversations/{conversation}/messages"
            f"?since={reply['replayedUpTo']}&limit=500",
            headers={"Authorization": f"Bearer {server.token(2)}"},
        ) as page:
            assert page.status == 200
            assert [m["id"] for m in (await page.json())["messages"]] == ids[CAP:CAP + 500]
        # A join with less than the cap to replay is whole, and says nothing of resync.
        again = await bob.call(
            "conversation:join", {"conversationId": conversation, "since": ids[-CAP]}
        )
        assert again["ok"] and "resync" not in again and "replayedUpTo" not in again


async def test_a_socket_cut_by_its_heartbeat_during_its_join_leaves_no_traceback(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The issue's case: the socket's frames wait while its join runs, so its PONG
    is not read, the heartbeat closes it, and the join goes on for a gone sid."""
    conversation = await server.conversation(1, 2)
    await seed(server, conversation, 3 * 200 + 1)  # more than a page
    bob = await server.client(2)
    sid = bob.sio.get_sid()

    async def heartbeat_cuts() -> None:
        server.clock.advance((server.settings.ping_interval_ms
                              + server.settings.ping_timeout_ms) / 1000 + 2)
        await server.wait_until(gone(server, sid))

    pages = pages_read_until(server, monkeypatch, heartbeat_cuts)
    with caplog.at_level(logging.INFO):
        await bob.sio.emit("conversation:join", {"conversationId": conversation, "since": 0})
        await bob.wait_disconnected()
        await server.wait_until(answered(server))

    assert printed_problems(capsys) == []
    assert server_log_problems(caplog.records, logging.WARNING) == []
    assert (errors_counted(server, "INTERNAL"), errors_counted(server, "UNAVAILABLE")) == (0, 1)
    assert len(pages) == 1  # nothing read for the socket once it was gone


async def test_a_polling_socket_that_closes_right_after_sending_its_join_leaves_no_traceback(
    server: RunningServer, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:
    conversation = await server.conversation(1, 2)
    await seed(server, conversation, 3 * 200 + 1)
    async with session.get(server.url + POLLING) as handshake:
        eio_sid = json.loads((await handshake.text())[1:])["sid"]
    url = f"{server.url}{POLLING}&sid={eio_sid}"
    async with session.post(url, data="40" + json.dumps({"token": server.token(2)})) as connect:
        assert connect.status == 200
    async with session.get(url) as connected:
        sid = json.loads((await connected.text()).split("\x1e")[0][2:])["sid"]

    async def client_closes() -> None:
        # An Engine.IO CLOSE in a second POST while the join's is handled: one POST
        # at a time, so the overlap itself closes the session (400), as Node does.
        async with session.post(url, data="1") as closed:
            assert closed.status == 400
        await server.wait_until(gone(server, sid))

    pages = pages_read_until(server, monkeypatch, client_closes)
    join = "420" + json.dumps(["conversation:join", {"conversationId": conversation, "since": 0}])
    with caplog.at_level(logging.INFO):
        async with asyncio.timeout(WAIT_S), session.post(url, data=join) as joined:
            assert joined.status == 200
        await server.wait_until(answered(server))

    assert printed_problems(capsys) == []
    assert server_log_problems(caplog.records, logging.WARNING) == []
    assert (errors_counted(server, "INTERNAL"), errors_counted(server, "UNAVAILABLE")) == (0, 1)
    assert len(pages) == 1
