"""Bounds on what a polling POST may bring in, enforced before Engine.IO reads it.

python-engineio checks a POST's Content-Length against maxPayload, but aiohttp
inflates a gzip/deflate body as it reads, so a 48 KB bomb becomes 50 MB in memory;
an oversized body makes engineio close the session while holding the request
open until the client polls again; and a body of too many packets is dropped
silently with 200. Here each is refused at once with its own status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ecigdis_ws.transport.origins import SOCKET_IO_PATH
from ecigdis_ws.transport.protocol_errors import polling_body_problem

# Packets in one polling POST: socket.io-client sends all it buffered at once,
# so this is generous (bytes are bounded by MAX_PAYLOAD_BYTES, events by the
# rate limit); python-engineio is set to decode as many (transport/server.py).
MAX_PACKETS_PER_POST = 128
POLL_BODY = web.RequestKey("poll_body", bytes)


class BufferedBody:
    """Stands in for the request stream once the middleware has read the body."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def read(self, length: int = -1) -> bytes:
        return self._body if length < 0 else self._body[:length]


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"code": "INVALID_PAYLOAD", "message": message}, status=status)


def polling_limits_middleware(
    max_payload_bytes: int, drop_session: Any, refuse: Callable[[str, str], Awaitable[None]]
) -> Middleware:
    """`drop_session(sid)` closes an Engine.IO session that sent an oversized body;
    `refuse(sid, reason)` one that sent a body of malformed packets."""

    @web.middleware
    async def limit_polling(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST" or not request.path.startswith(SOCKET_IO_PATH):
            return await handler(request)
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            return _refuse(415, "compressed request bodies are not accepted")
        length = request.content_length
        if length is None:
            return _refuse(411, "Content-Length is required")
        if length > max_payload_bytes:
            await drop_session(request.query.get("sid", ""))
            return _refuse(413, f"body over {max_payload_bytes} bytes")
        try:
            body = await request.content.readexactly(length) if length else b""
        except asyncio.IncompleteReadError:  # the client left before its body was all sent
            return _refuse(400, "request body ended before its Content-Length")
        if body.count(b"\x1e") + 1 > MAX_PACKETS_PER_POST:
            return _refuse(400, f"more than {MAX_PACKETS_PER_POST} packets in one request")
        problem = polling_body_problem(body)
        if problem is not None:
            await refuse(request.query.get("sid", ""), problem)
            return _refuse(400, f"malformed Engine.IO packet ({problem})")
        request[POLL_BODY] = body
        return await handler(request)

    return limit_polling
