"""Engine.IO requests for a session that is gone (transport/stale_sessions.py):
answered 400 with the Node server's body, counted, and never an ERROR line."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from ecigdis_ws.transport.socketio_overrides.server import SOCKET_SERVER
from ecigdis_ws.transport.stale_sessions import UNKNOWN_SID
from tests.support import WAIT_S, RunningServer, server_log_problems
from tests.transport.conftest import open_polling_session

pytestmark = pytest.mark.backends("sqlite")

POLLING = "/socket.io/?EIO=4&transport=polling"


def stale_count(server: RunningServer) -> float:
    value = server.chat.metrics.registry.get_sample_value(
        "ecigdis_ws_stale_session_requests_total")
    return value or 0.0


async def closed_by_its_client(
    server: RunningServer, session: aiohttp.ClientSession, sid: str
) -> None:
    """The client sends Engine.IO CLOSE: the server closes the session at once, and
    engineio keeps the closed socket in its table until its next sweep."""
    async with session.post(f"{server.url}{POLLING}&sid={sid}", data=b"1") as closed:
        assert closed.status == 200
    sockets = server.app[SOCKET_SERVER].eio.sockets
    await server.wait_until(lambda: sid not in sockets or sockets[sid].closed)


async def test_a_poll_for_a_session_that_just_closed_is_answered_400_without_an_error_line(
    server: RunningServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    sid = await open_polling_session(server, session)
    await closed_by_its_client(server, session, sid)
    before = stale_count(server)
    with caplog.at_level(logging.DEBUG):
        for _ in range(2):  # python-engineio logs the first at ERROR, then at INFO
            async with session.get(f"{server.url}{POLLING}&sid={sid}") as late:
                assert late.status == 400
                assert await late.json() == UNKNOWN_SID
    assert stale_count(server) == before + 2
    assert server_log_problems(caplog.records, logging.WARNING) == []


async def test_a_request_for_an_unknown_session_is_answered_like_node(
    server: RunningServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        for method in ("GET", "POST"):
            async with session.request(method, f"{server.url}{POLLING}&sid=nosuchsession",
                                    data=b"40" if method == "POST" else None) as reply:
                assert (reply.status, await reply.json()) == (400, UNKNOWN_SID)
        upgrade = f"{server.url}/socket.io/?EIO=4&transport=websocket&sid=nosuchsession"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(upgrade)
        assert refused.value.status == 400
    assert stale_count(server) == 3
    assert server_log_problems(caplog.records, logging.WARNING) == []


async def test_a_post_for_no_session_is_refused_before_its_body_is_read(
    server: RunningServer,
) -> None:
    """A body announced but never sent: the answer comes at once, not after a read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            f"POST {POLLING}&sid=nosuchsession HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: text/plain\r\nContent-Length: 60000\r\n\r\n".encode()
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), WAIT_S)
        assert status.startswith(b"HTTP/1.1 400 "), status
    finally:
        writer.close()
    assert stale_count(server) == 1


async def test_a_live_polling_session_is_served_as_before(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    sid = await open_polling_session(server, session)
    async with session.post(f"{server.url}{POLLING}&sid={sid}", data=b"40") as connect:
        assert connect.status == 200
    async with session.get(f"{server.url}{POLLING}&sid={sid}") as poll:
        assert poll.status == 200
        assert (await poll.text()).startswith("40{")
    assert stale_count(server) == 0
