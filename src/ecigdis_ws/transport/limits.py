"""Bounds on what a polling POST may bring in, enforced before Engine.IO reads it;
and the deadline on reading a request body, polling or REST.

python-engineio checks a POST's Content-Length against maxPayload, but aiohttp
inflates a gzip/deflate body as it reads, so a 48 KB bomb becomes 50 MB in memory;
an oversized body makes engineio close the session while holding the request
open until the client polls again; and a body of too many packets is dropped
silently with 200. Here each is refused at once with its own status; and a body
that does not arrive within HTTP_BODY_TIMEOUT_MS is answered 408 with the
connection closed, rather than holding it for as long as the client trickles.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ecigdis_ws.clock import Clock
from ecigdis_ws.services.error_reports import ErrorReports
from ecigdis_ws.transport.http_errors import HttpRefusal, http_error, invalid_body
from ecigdis_ws.transport.origins import SOCKET_IO_PATH
from ecigdis_ws.transport.protocol_errors import polling_body_problem

T = TypeVar("T")

# Packets in one polling POST: socket.io-client sends all it buffered at once,
# so this is generous (bytes are bounded by MAX_PAYLOAD_BYTES, events by the
# rate limit); python-engineio is set to decode as many (transport/socketio_overrides/server.py).
MAX_PACKETS_PER_POST = 128
POLL_BODY = web.RequestKey("poll_body", bytes)
# What reading a body raises when the client hangs up part-way (aiohttp sets
# ConnectionResetError on the stream) or sends a malformed chunked body: client
# input, answered 400 (if anyone is still there), never a traceback.
# (IncompleteReadError: the stream ended cleanly before its Content-Length.)
BODY_CUT_OFF = (ConnectionError, web.RequestPayloadError, asyncio.IncompleteReadError)


class BufferedBody:
    """Stands in for the request stream once the middleware has read the body."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def read(self, length: int = -1) -> bytes:
        return self._body if length < 0 else self._body[:length]


async def within(clock: Clock, seconds: float, read: Awaitable[T]) -> T:
    """`read`, or TimeoutError once `seconds` have passed on `clock` (the injected
    clock, so tests move time instead of waiting for it)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(None) as deadline:
        timer = clock.call_later(seconds, lambda: deadline.reschedule(loop.time()))
        try:
            return await read
        finally:
            timer.cancel()


async def read_body(request: web.Request, limit: int, clock: Clock, timeout_s: float) -> bytes:
    """A request's whole body, read in a loop (one read may return part of it): at
    most `limit` bytes (413 past it, by Content-Length before reading), within
    `timeout_s` on the injected clock (408), and a body the client cuts off a 400.
    The REST routes and POST /dev/token read theirs through this."""
    if request.content_length is not None and request.content_length > limit:
        raise body_too_large(limit)
    try:
        return await within(clock, timeout_s, _read_at_most(request, limit))
    except TimeoutError:
        raise body_too_slow(timeout_s) from None
    except BODY_CUT_OFF:
        raise invalid_body(BODY_CUT_OFF_ANSWER) from None


async def _read_at_most(request: web.Request, limit: int) -> bytes:
    raw = bytearray()
    while chunk := await request.content.read(limit + 1 - len(raw)):
        raw += chunk
        if len(raw) > limit:
            raise body_too_large(limit)
    return bytes(raw)


def body_too_large(limit: int) -> HttpRefusal:
    return invalid_body(f"body over {limit} bytes", 413)


def body_too_slow(seconds: float) -> HttpRefusal:
    # The unread rest of the body would be read as the next request: the
    # connection ends with the answer.
    return invalid_body(
        f"the request body did not arrive within {seconds:g} s", 408, close=True
    )


BODY_CUT_OFF_ANSWER = "the request body was cut off"


def polling_limits_middleware(
    max_payload_bytes: int,
    drop_session: Any,
    refuse: Callable[[str, str], Awaitable[None]],
    clock: Clock,
    body_timeout_s: float,
    reports: ErrorReports,
) -> Middleware:
    """`drop_session(sid)` closes an Engine.IO session whose body was refused;
    `refuse(sid, reason)` one that sent a body of malformed packets."""

    def _refuse(status: int, message: str) -> web.Response:
        return http_error(invalid_body(message, status), reports)

    @web.middleware
    async def limit_polling(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST" or not request.path.startswith(SOCKET_IO_PATH):
            return await handler(request)
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            return _refuse(415, "compressed request bodies are not accepted")
        sid = request.query.get("sid", "")
        length = request.content_length
        if length is None:
            return _refuse(411, "Content-Length is required")
        if length > max_payload_bytes:
            await drop_session(sid)
            return http_error(body_too_large(max_payload_bytes), reports)
        try:
            body = (
                await within(clock, body_timeout_s, request.content.readexactly(length))
                if length else b""  # (aiohttp's empty stream refuses readexactly(0))
            )
        except (TimeoutError, *BODY_CUT_OFF) as exc:
            # None of the body reaches engineio: the session is closed rather than
            # left to think its packets were sent (the client reconnects).
            await drop_session(sid)
            if not isinstance(exc, TimeoutError):
                return _refuse(400, BODY_CUT_OFF_ANSWER)
            return http_error(body_too_slow(body_timeout_s), reports)
        if body.count(b"\x1e") + 1 > MAX_PACKETS_PER_POST:
            return _refuse(400, f"more than {MAX_PACKETS_PER_POST} packets in one request")
        problem = polling_body_problem(body)
        if problem is not None:
            await refuse(sid, problem)
            return _refuse(400, f"malformed Engine.IO packet ({problem})")
        request[POLL_BODY] = body
        return await handler(request)

    return limit_polling
