"""What a websocket client sends, bounded: the frames waiting, the closing handshake.

Used by both websocket drivers: DirectSocket.serve (websocket.py) and, with
WS_COMPRESSION, engineio's own driver wrapped by `checked_websocket`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.transport.protocol_errors import PENDING_FRAMES, ProtocolErrors, engineio_problem

log = get_logger(__name__)

# Frames a client may have waiting behind the one being handled. socket.io-client
# sends one event at a time per user action; a burst past this is a client queuing
# work faster than it is served (120 joins in 8.5 KB kept a core busy for 110 s).
MAX_PENDING_FRAMES = 128
# A closing handshake the client does not answer is given up after this long
# (aiohttp's default is 10 s): the session is already closed by then.
CLOSE_TIMEOUT_S = 2.0


def websocket_response(max_msg_size: int) -> web.WebSocketResponse:
    """The server's websocket: no compression (websocket.py says why), and a
    short closing handshake."""
    return web.WebSocketResponse(
        max_msg_size=max_msg_size, compress=False, timeout=CLOSE_TIMEOUT_S
    )


def pending_frames(response: web.WebSocketResponse) -> int:
    """Frames aiohttp has read from the connection that nobody has received yet
    (its reader's `_buffer`; aiohttp pauses reading past 64 KiB of them)."""
    reader = response._reader
    return len(reader._buffer) if reader is not None else 0


async def open_websocket(
    request: web.Request, response: web.WebSocketResponse
) -> asyncio.BaseTransport | None:
    """The websocket handshake answered; None if the client left during it. (A
    handshake aiohttp finds malformed raises HTTPBadRequest: a 400.)"""
    try:
        await response.prepare(request)
    except ConnectionResetError:
        return None
    return request.transport


def checked_websocket(driver: type[Any], protocol_errors: ProtocolErrors) -> type[Any]:
    """engineio's own websocket driver (used with WS_COMPRESSION), with each frame
    checked before engineio decodes it. Its `wait()` raising OSError is how the
    driver says "connection gone": engineio's reader then closes the socket."""

    class CheckedWebSocket(driver):  # type: ignore[misc]
        async def wait(self) -> Any:
            try:
                data = await super().wait()
            except ConnectionError:  # (lost while aiohttp answered a PING frame)
                log.warning("a websocket's connection was lost while aiohttp answered "
                            "its PING frames")
                raise OSError("connection lost") from None
            # The same bounds as DirectSocket.serve: nothing handled after the
            # client left, and no more than MAX_PENDING_FRAMES waiting.
            request = self.environ.get("aiohttp.request")
            transport = request.transport if request is not None else None
            if transport is None or transport.is_closing():
                raise OSError("connection gone")
            if pending_frames(self._sock) > MAX_PENDING_FRAMES:
                protocol_errors.refuse(PENDING_FRAMES)
                raise OSError(PENDING_FRAMES)
            problem = engineio_problem(data)
            if problem is not None:
                protocol_errors.refuse(problem)
                raise OSError(problem)
            return data

    return CheckedWebSocket
