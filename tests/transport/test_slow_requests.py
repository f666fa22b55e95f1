"""Slow HTTP heads and bodies (issue 13, finding 3): a client that trickles a
request a byte at a time, or opens a connection and sends nothing, no longer
holds the connection (a file descriptor, a handler) for as long as it likes.

Each test drives the attack over a raw TCP connection to the real server. The
deadlines are settings, lowered here: HTTP_KEEPALIVE_TIMEOUT_MS (idle and head)
is aiohttp's own timer, on the event loop's time, so it is short and awaited as
a condition; HTTP_BODY_TIMEOUT_MS runs on the injected clock, which the tests
move, and also bounds (in real time) how long a refused body is drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import aiohttp
import pytest
from structlog.testing import capture_logs

from ecigdis_ws.app import connection_deadlines
from ecigdis_ws.settings import Settings
from ecigdis_ws.transport.rest_routes import REST_API
from ecigdis_ws.transport.socketio_overrides.server import SOCKET_SERVER
from ecigdis_ws.transport.stale_sessions import UNKNOWN_SID
from tests.support import WAIT_S, RunningServer, server_log_problems
from tests.transport.conftest import open_polling_session
from tests.transport.rest_support import Rest

pytestmark = pytest.mark.backends("sqlite")

DEADLINE_MS = 300
DEADLINES = {"HTTP_KEEPALIVE_TIMEOUT_MS": str(DEADLINE_MS),
             "HTTP_BODY_TIMEOUT_MS": str(DEADLINE_MS)}
POLLING = "/socket.io/?EIO=4&transport=polling"
MESSAGES = "/api/messenger/conversations/1/messages"
TRICKLE_S = 0.05  # one byte this often: the connection is never silent


@pytest.fixture
async def server(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[RunningServer]:
    """A server with short deadlines; no test may leave a traceback or an error
    line in its log (aiohttp's, through logging; the server's, through structlog)."""
    with caplog.at_level(logging.INFO), capture_logs() as logs:
        async with make_server(**DEADLINES) as running:
            yield running
    records = [r for when in ("setup", "call", "teardown") for r in caplog.get_records(when)]
    assert server_log_problems(records) == []
    assert [entry for entry in logs
            if "exc_info" in entry or entry["log_level"] in ("error", "critical")] == []


@dataclass
class Raw:
    """One raw TCP connection to the server."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    sent: int = 0

    @classmethod
    async def open(cls, server: RunningServer) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()
        self.sent += len(data)

    async def trickle(self, data: bytes) -> None:
        """Send `data` one byte at a time, until done or the server hangs up."""
        with contextlib.suppress(ConnectionError):
            for byte in data:
                await self.send(bytes([byte]))
                await asyncio.sleep(TRICKLE_S)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names) and body."""
        async with asyncio.timeout(WAIT_S):
            status = int((await self.reader.readline()).split()[1])
            headers = {}
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def closed_by_server(self) -> bytes:
        """Everything the server still sends, once it has closed the connection
        (`WAIT_S` only bounds a failure: the deadlines here are 0.3 s)."""
        async with asyncio.timeout(WAIT_S):
            try:
                return await self.reader.read()
            except ConnectionResetError:
                return b""

    def close(self) -> None:
        self.writer.close()


@contextlib.asynccontextmanager
async def raw(server: RunningServer) -> AsyncIterator[Raw]:
    connection = await Raw.open(server)
    try:
        yield connection
    finally:
        connection.close()


@contextlib.asynccontextmanager
async def trickling(connection: Raw, data: bytes) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(connection.trickle(data))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def post_head(path: str, length: int, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


async def body_timer_armed(server: RunningServer, before: int) -> None:
    """The server is reading the body: its deadline is armed on the clock."""
    await server.wait_until(lambda: server.clock.pending > before)


async def new_polling_session(server: RunningServer) -> str:
    async with aiohttp.ClientSession() as http:
        return await open_polling_session(server, http)


# -- heads and idle connections: HTTP_KEEPALIVE_TIMEOUT_MS -------------------------------


async def test_every_connection_gets_the_deadlines(server: RunningServer) -> None:
    """aiohttp takes them as keyword arguments (app.py connection_deadlines) and,
    should an upgrade not know one, falls back to its own defaults (an hour's
    keep-alive) with only a warning: that must fail here, not pass unnoticed."""
    assert connection_deadlines(Settings()) == {"keepalive_timeout": 10.0,
                                                "lingering_time": 10.0}
    async with raw(server):
        await server.wait_until(lambda: server.http_connections == 1)
        assert server.runner is not None and server.runner.server is not None
        protocol = server.runner.server.connections[0]
        assert protocol.keepalive_timeout == DEADLINE_MS / 1000


async def test_a_head_trickled_byte_by_byte_is_closed_at_the_deadline(
    server: RunningServer,
) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000
    async with raw(server) as connection, trickling(connection, head):
        await server.wait_until(lambda: server.http_connections == 1)
        assert await connection.closed_by_server() == b""  # no answer: no request came
        await server.wait_until(lambda: server.http_connections == 0)
    assert 0 < connection.sent < len(head)  # cut off part-way through its head


async def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(
    server: RunningServer,
) -> None:
    async with raw(server) as connection:
        await server.wait_until(lambda: server.http_connections == 1)
        assert await connection.closed_by_server() == b""
        await server.wait_until(lambda: server.http_connections == 0)


async def test_an_idle_keep_alive_connection_is_closed_at_the_deadline(
    server: RunningServer,
) -> None:
    async with raw(server) as connection:
        for _ in range(2):  # a kept-alive connection serves the next request
            await connection.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, headers, _ = await connection.response()
            assert status == 200 and headers.get("connection", "").lower() != "close"
        assert await connection.closed_by_server() == b""
        await server.wait_until(lambda: server.http_connections == 0)


# -- bodies: refused before they are read, or HTTP_BODY_TIMEOUT_MS ----------------------


async def test_a_polling_post_for_no_session_is_answered_before_its_trickled_body(
    server: RunningServer,
) -> None:
    async with raw(server) as connection:
        await connection.send(post_head(f"{POLLING}&sid=nosuchsession", 60000))
        async with trickling(connection, b"4" * 60000):
            status, _, body = await connection.response()
            assert (status, json.loads(body)) == (400, UNKNOWN_SID)
            assert connection.sent < 1000  # answered at once, not after the body
            # The unread rest is drained at most HTTP_BODY_TIMEOUT_MS, then cut.
            assert await connection.closed_by_server() == b""
        await server.wait_until(lambda: server.http_connections == 0)


async def test_a_trickled_polling_body_is_answered_408_and_its_session_closed(
    server: RunningServer,
) -> None:
    sid = await new_polling_session(server)
    sockets = server.app[SOCKET_SERVER].eio.sockets
    timers = server.clock.pending
    async with raw(server) as connection:
        await connection.send(post_head(f"{POLLING}&sid={sid}", 60000))
        async with trickling(connection, b"40" + b" " * 59998):
            await body_timer_armed(server, timers)
            server.clock.advance(DEADLINE_MS / 1000)
            status, headers, body = await connection.response()
            assert status == 408 and headers["connection"].lower() == "close"
            assert json.loads(body)["error"]["code"] == "INVALID_PAYLOAD"
            assert await connection.closed_by_server() == b""
        await server.wait_until(lambda: server.http_connections == 0)
    # Not half-fed: the "40" (connect) that did arrive never reached Socket.IO,
    # and the session is closed, so its client reconnects instead of believing
    # its packets were delivered.
    assert sid not in sockets or sockets[sid].closed
    assert server.chat.sessions.count == 0


async def test_a_rest_post_without_a_token_is_answered_401_before_its_trickled_body(
    server: RunningServer,
) -> None:
    async with raw(server) as connection:
        await connection.send(post_head(MESSAGES, 60000))
        async with trickling(connection, b"{" + b" " * 59999):
            status, _, body = await connection.response()
            assert status == 401 and json.loads(body)["error"]["code"] == "UNAUTHENTICATED"
            assert connection.sent < 1000
            assert await connection.closed_by_server() == b""
        await server.wait_until(lambda: server.http_connections == 0)


async def test_a_trickled_rest_body_is_answered_408_at_the_deadline(
    server: RunningServer,
) -> None:
    timers = server.clock.pending
    async with raw(server) as connection:
        await connection.send(post_head(MESSAGES, 60000, server.token(1)))
        async with trickling(connection, b"{" + b" " * 59999):
            await body_timer_armed(server, timers)
            server.clock.advance(DEADLINE_MS / 1000)
            status, headers, body = await connection.response()
            assert status == 408 and headers["connection"].lower() == "close"
            assert json.loads(body)["error"]["code"] == "INVALID_PAYLOAD"
            assert await connection.closed_by_server() == b""
        await server.wait_until(lambda: server.http_connections == 0)


async def test_a_body_that_arrives_in_time_is_served(server: RunningServer) -> None:
    """The deadline bounds the read, and is disarmed by a body that completes."""
    timers = server.clock.pending
    body = json.dumps({"title": "slow but in time", "members": [2]}).encode()
    async with raw(server) as connection:
        await connection.send(post_head("/api/messenger/conversations", len(body),
                                        server.token(1)))
        await connection.trickle(body[:-1])
        await body_timer_armed(server, timers)
        server.clock.advance(DEADLINE_MS / 1000 / 2)
        await connection.send(body[-1:])
        status, _, answer = await connection.response()
        assert status == 201 and json.loads(answer)["title"] == "slow but in time"
    assert server.clock.pending == timers


# -- what the deadlines must not cut --------------------------------------------------


async def test_long_polls_and_websockets_outlive_every_deadline(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    """The deadlines bound reading a request, not the time an answer takes."""
    conversation = await server.conversation(1, 2)
    websocket = await server.client(1)
    rest = Rest(server, session)
    cursor = (await rest.poll(2)).body["cursor"]
    held = asyncio.create_task(rest.poll(2, cursor, wait_s=60))
    await server.wait_until(lambda: server.app[REST_API].feed.waiting == 1)
    sid = await new_polling_session(server)
    async with session.post(f"{server.url}{POLLING}&sid={sid}", data=b"40") as connect:
        assert connect.status == 200
    async with session.get(f"{server.url}{POLLING}&sid={sid}") as connected:
        socket_sid = json.loads((await connected.text()).split("\x1e")[0][2:])["sid"]
    engineio_poll = asyncio.create_task(session.get(f"{server.url}{POLLING}&sid={sid}"))
    async with raw(server) as idle:  # opened after them all: its deadline passes last
        assert await idle.closed_by_server() == b""
    assert not held.done() and not engineio_poll.done()
    joined = await websocket.call("conversation:join", {"conversationId": conversation})
    assert joined["ok"]
    await server.app[SOCKET_SERVER].emit("hello", {"still": "here"}, to=socket_sid)
    async with await asyncio.wait_for(engineio_poll, WAIT_S) as woken:
        assert woken.status == 200 and "hello" in await woken.text()
    await server.advance(server.settings.long_poll_timeout_ms / 1000)
    assert (await asyncio.wait_for(held, WAIT_S)).status == 200


@pytest.mark.parametrize("path", ["polling", "rest"])
async def test_a_client_that_hangs_up_part_way_through_a_body_leaves_no_traceback(
    server: RunningServer, path: str
) -> None:
    """A 400 that nobody reads, the polling session closed as for a late body,
    and no traceback (the server fixture fails the test on any)."""
    sid = await new_polling_session(server)
    sockets = server.app[SOCKET_SERVER].eio.sockets
    timers = server.clock.pending
    if path == "polling":
        head = post_head(f"{POLLING}&sid={sid}", 60000)
    else:
        head = post_head(MESSAGES, 60000, server.token(1))
    async with raw(server) as connection:
        await connection.send(head + b"{")
        await body_timer_armed(server, timers)
    await server.wait_until(lambda: server.http_connections == 0)
    # (the body timer is cancelled; closing the polling session also ends its admission deadline)
    await server.wait_until(lambda: server.clock.pending <= timers)
    assert (sid not in sockets or sockets[sid].closed) == (path == "polling")


# -- bodies that fail to decode, left unread by an early answer ------------------------

GARBAGE = b"this is not gzip at all"


def encoded_head(path: str, framing: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n\r\n").encode()


@pytest.mark.parametrize("path", [MESSAGES, POLLING + "&sid=gone"], ids=["rest", "polling"])
@pytest.mark.parametrize("framing,body", [
    (f"Content-Encoding: gzip\r\nContent-Length: {len(GARBAGE)}", GARBAGE),
    ("Transfer-Encoding: chunked", b"zz\r\n" + GARBAGE + b"\r\n0\r\n\r\n"),
], ids=["bad-gzip", "bad-chunks"])
async def test_a_body_that_cannot_be_decoded_is_answered_and_never_logs_a_traceback(
    server: RunningServer, path: str, framing: str, body: bytes
) -> None:
    """Answered before its body is read (no token; a session that is gone), a
    body whose encoding is broken must not reach aiohttp's drain of unread
    bodies, which logs "Unhandled exception" with a traceback when it fails.
    (The fixture fails the test on any traceback in the log.)"""
    async with raw(server) as connection:
        await connection.send(encoded_head(path, framing) + body)
        status, _, _ = await connection.response()
        assert status in (400, 401)
        assert await connection.closed_by_server() == b""
    await server.wait_until(lambda: server.http_connections == 0)


async def test_a_request_aiohttp_cannot_parse_is_one_warning_not_a_traceback(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with raw(server) as connection:
        await connection.send(b"GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
        status, _, _ = await connection.response()
        assert status == 400
        assert await connection.closed_by_server() == b""
    [line] = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert line.levelno == logging.WARNING and line.exc_info is None
    assert line.getMessage().startswith("malformed HTTP request, answered 400 and closed: ")
