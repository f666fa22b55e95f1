"""New websocket connections, answered ahead of the middlewares and of engineio.

A `GET /socket.io/?EIO=4&transport=websocket` without a session id opens an
Engine.IO connection on a websocket from its first request: socket.io-client's
`transports: ["websocket"]`, the way the portal connects. Through engineio it was
served from inside its request handler (`handle_request` → `_handle_connect` →
`handle_get_request` → `_upgrade_websocket` → the driver → the socket's reader),
under the coroutines of every aiohttp middleware, and each of those coroutines
stayed suspended for the connection's life, holding the handshake's whole WSGI
environ. At 10,000 idle connections that was about a fifth of the memory each took
(BENCHMARKS.md, "Memory").

Here the first middleware answers such a request itself: the checks the middlewares
would have made (the Origin allowlist, the per-address cap: the same functions, so
the same refusals), the websocket handshake, the Engine.IO socket created and
registered as engineio's `_handle_connect` does it (an id from engineio, the same
OPEN packet), python-socketio told of it as engineio tells it, and then
`DirectSocket.serve`, one coroutine, reads the connection until it ends. Once the
websocket is open, what aiohttp parsed of the handshake request is dropped too
(handshake_leftovers.py).

Every other request under /socket.io/ (polling, a polling session's upgrade, a
request engineio refuses) goes on through the middlewares to engineio as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from engineio import packet as eio_packet

from ecigdis_ws.transport.connect_environ import connect_environ
from ecigdis_ws.transport.http_errors import Refusal
from ecigdis_ws.transport.origins import SOCKET_IO_PATH
from ecigdis_ws.transport.socketio_overrides.handshake_leftovers import drop_handshake
from ecigdis_ws.transport.socketio_overrides.inbound import open_websocket, websocket_response
from ecigdis_ws.transport.socketio_overrides.server import ChatSocketServer
from ecigdis_ws.transport.socketio_overrides.websocket import DirectSocket, DirectWebSocket


def is_new_websocket(request: web.Request) -> bool:
    """A request engineio would take to `_handle_connect` as a websocket, and its
    new socket straight to `_upgrade_websocket` (engineio's `handle_request` and
    `handle_get_request`). Anything doubtful (a repeated parameter or header, a
    JSONP index) is left to engineio, which answers it as it always has."""
    if request.method != "GET" or request.path != SOCKET_IO_PATH:
        return False
    query = request.query
    if ("sid" in query or "j" in query or query.getall("EIO", ()) != ["4"]
            or query.getall("transport", ()) != ["websocket"]):
        return False
    upgrade = request.headers.getall("Upgrade", ())
    if len(upgrade) != 1 or upgrade[0].lower() != "websocket":
        return False
    connection = ",".join(request.headers.getall("Connection", ())).lower()
    return "upgrade" in (token.strip() for token in connection.split(","))


class WebSocketEntry:
    """Serves new websocket connections for `sio`, whose websockets are direct."""

    def __init__(self, sio: ChatSocketServer, driver: type[DirectWebSocket]) -> None:
        self._sio = sio
        self._driver = driver

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        """The connection, from its handshake to its end. The socket is counted
        (registered, its admission deadline armed) before the handshake is
        answered, as through engineio, so that the per-address cap holds for
        handshakes that arrive together."""
        socket = await self._open(request)
        response = websocket_response(self._sio.eio.max_http_buffer_size)
        try:
            transport = await open_websocket(request, response)
            if transport is not None:
                drop_handshake(request, response)
                await socket.serve(response, transport, self._driver)
        finally:
            await self._forget(socket)
        return response

    async def _open(self, request: web.Request) -> DirectSocket:
        """An Engine.IO socket, registered as engineio's `_handle_connect` does."""
        eio = self._sio.eio
        if eio.start_service_task:  # (engineio's client monitor, which its first
            eio.start_service_task = False  # connection starts, whatever the transport)
            eio.service_task_handle = eio.start_background_task(eio._service_task)
        sid: str = eio.generate_id()
        socket = DirectSocket(eio, sid)
        socket.adopt(self._driver.policy)
        eio.sockets[sid] = socket
        socket.queue.put_nowait(eio_packet.Packet(eio_packet.OPEN, open_packet_data(eio, sid)))
        # engineio's "connect" event, whose handler python-socketio registered; it
        # accepts every connection (the checks were made above). engineio's
        # `schedule_ping` is not started: a direct socket's heartbeat runs on the clock.
        await self._sio._handle_eio_connect(sid, connect_environ(request))
        return socket

    async def _forget(self, socket: DirectSocket) -> None:
        """Closed (if the handshake failed, `serve` never ran) and forgotten, as
        engineio's `_handle_connect` forgets a websocket's socket once it closed."""
        eio = self._sio.eio
        if not socket.closed:
            await socket.close(wait=False, abort=True, reason=eio.reason.TRANSPORT_CLOSE)
        if eio.sockets.get(socket.sid) is socket:
            del eio.sockets[socket.sid]


def open_packet_data(eio: Any, sid: str) -> dict[str, Any]:
    """The OPEN packet's data, as engineio's `_handle_connect` writes it for a
    websocket (whose `upgrades` are none)."""
    return {
        "sid": sid,
        "upgrades": [],
        "pingTimeout": int(eio.ping_timeout * 1000),
        "pingInterval": int(eio.ping_interval + eio.ping_interval_grace_period) * 1000,
        "maxPayload": eio.max_http_buffer_size,
    }


def websocket_entry_middleware(
    sio: ChatSocketServer, refusals: Sequence[Refusal]
) -> Middleware | None:
    """The first middleware: new websocket connections, after `refusals` (the
    checks the later middlewares make of a handshake). None where websockets are
    engineio's own (WS_COMPRESSION): they go the whole way through engineio."""
    if sio.direct_websocket is None:
        return None
    entry = WebSocketEntry(sio, sio.direct_websocket)

    @web.middleware
    async def enter(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not is_new_websocket(request):
            return await handler(request)
        for refusal in refusals:
            refused = refusal(request)
            if refused is not None:
                return refused
        return await entry.serve(request)

    return enter
