"""python-socketio's AsyncServer as this server needs it: packets checked before
python-socketio decodes them, the websocket fast path for events, the admission
hooks, every session made a PollingSocket, and connections closed after a
server-side disconnect (the package docstring lists every member relied on)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import socketio
from aiohttp import web
from engineio import packet as eio_packet

from ecigdis_ws.clock import Clock
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.transport.acks import ACK_WANTED
from ecigdis_ws.transport.connect_environ import CONNECT_ENVIRON_KEYS
from ecigdis_ws.transport.limits import POLL_BODY, BufferedBody
from ecigdis_ws.transport.protocol_errors import (
    BINARY,
    MAX_ACK_ID_DIGITS,
    RESERVED_EVENT,
    SOCKETIO_PACKET,
    ProtocolErrors,
    ack_id_end,
    socketio_problem,
)
from ecigdis_ws.transport.socketio_overrides.inbound import checked_websocket
from ecigdis_ws.transport.socketio_overrides.managers import encode_event
from ecigdis_ws.transport.socketio_overrides.polling import (
    PollingSocket,
    SessionPolicy,
    TransportLimits,
    UpgradeGate,
    adopt_session,
)
from ecigdis_ws.transport.socketio_overrides.websocket import (
    DirectSocket,
    DirectWebSocket,
    message_frame,
)

log = get_logger(__name__)

NAMESPACE = "/"


# Names the Socket.IO protocol reserves, which a client may never send as an
# event (socket.io-parser refuses them); python-socketio would hand a client's
# "connect" or "disconnect" to the server's own lifecycle handlers. "*" is
# python-socketio's catch-all.
RESERVED_EVENTS = frozenset({
    "connect", "connect_error", "disconnect", "disconnecting", "newListener",
    "removeListener", "*",
})


def well_formed_event(data: Any) -> bool:
    """[name, ...args] with a name a client may use."""
    return (
        isinstance(data, list)
        and len(data) >= 1
        and isinstance(data[0], str)
        and data[0] not in RESERVED_EVENTS
    )


def ack_arguments(reply: Any) -> list[Any]:
    """An ack's arguments as python-socketio sends them: none for None, a tuple
    spread into several, anything else as the one argument."""
    if reply is None:
        return []
    return list(reply) if isinstance(reply, tuple) else [reply]


class ChatSocketServer(socketio.AsyncServer):  # type: ignore[misc]
    manager_initialized: bool  # (python-socketio's, False until its manager starts)

    def __init__(
        self, *args: Any, clock: Clock, protocol_errors: ProtocolErrors,
        limits: TransportLimits, upgrade_timeout_s: float, direct_websockets: bool = True,
        **kwargs: Any,
    ) -> None:
        """`direct_websockets`: websockets are served by DirectWebSocket (no
        compression), whose heartbeats run on `clock`; False keeps engineio's own
        driver, with permessage-deflate. Either way each frame is checked first, and
        every session is bounded by `limits` (polling.py)."""
        super().__init__(*args, **kwargs)
        self.protocol_errors = protocol_errors
        # The sessions' bounds; the transport sets `upgrades` (the admission).
        self.session_policy = SessionPolicy(clock, limits, upgrade_timeout_s, UpgradeGate())
        # Told of every Engine.IO connection opened and closed (the admission).
        self.on_transport_open: Callable[[str, dict[str, Any]], None] | None = None
        self.on_transport_close: Callable[[str], None] | None = None
        # A polling body already read (and bounded) by polling_limits_middleware is
        # handed to engineio from memory; its own copy of the driver table is
        # changed, never the module's.
        drivers = dict(self.eio._async)
        translate = drivers["translate_request"]

        def translate_request(request: Any) -> dict[str, Any]:
            environ: dict[str, Any] = translate(request)
            body = request.get(POLL_BODY)
            if body is not None:
                environ["wsgi.input"] = BufferedBody(body)
            return environ

        drivers["translate_request"] = translate_request
        # The driver of the direct websocket path; None with WS_COMPRESSION.
        self.direct_websocket: type[DirectWebSocket] | None = None
        if direct_websockets:
            self.direct_websocket = DirectWebSocket.for_server(
                limits.max_buffered_bytes, self._direct_event, self.session_policy,
                protocol_errors,
            )
            drivers["websocket"] = self.direct_websocket
        else:
            drivers["websocket"] = checked_websocket(drivers["websocket"], protocol_errors)
        self.eio._async = drivers

    async def drop_session(self, eio_sid: str) -> None:
        """Close one Engine.IO session at once, without waiting for its client."""
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None:
            await socket.close(wait=False, abort=True, reason=self.eio.reason.TRANSPORT_ERROR)
            self._end_transport(socket, wake_poll=False)
            # (a polling socket's waiting GET is answered by _handle_eio_disconnect)

    async def refuse(self, eio_sid: str, reason: str) -> None:
        """A packet broke the protocol: counted, logged once, connection closed."""
        self.protocol_errors.refuse(reason, eio_sid)
        await self.drop_session(eio_sid)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        """A packet that does not decode closes its connection, as socket.io-parser
        does in Node; without this the client would wait for an ack for ever.
        Binary data is refused before socketio sees it: it would keep every frame
        a BINARY_EVENT announces, as many as it announces, before any check."""
        problem = socketio_problem(data) if isinstance(data, str) else BINARY
        if problem is not None:
            await self.refuse(eio_sid, problem)
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except (ValueError, TypeError, KeyError, IndexError, RecursionError):
            await self.refuse(eio_sid, SOCKETIO_PACKET)

    async def _direct_event(self, socket: DirectSocket, text: str) -> bool:
        """An EVENT on the default namespace, from a websocket: decoded, handled
        and acknowledged here; what this does not recognise (another namespace,
        a malformed or unknown event, a socket not connected) returns False and
        goes through python-socketio, which refuses it as usual.

        This is python-socketio's `_handle_eio_message` → `_handle_event` →
        `_trigger_event` → `_send_packet` path without its per-packet objects:
        under chat load that machinery cost more than our handlers.
        """
        digits_end = ack_id_end(text, 2)
        if text[digits_end:digits_end + 1] != "[" or digits_end - 2 > MAX_ACK_ID_DIGITS:
            return False
        sid = self.manager.sid_from_eio_sid(socket.sid, NAMESPACE)
        if sid is None or not self.manager.is_connected(sid, NAMESPACE):
            return False
        try:
            data = self.packet_class.json.loads(text[digits_end:])
        except (ValueError, RecursionError):  # (deep nesting: the stdlib's RecursionError)
            return False
        if not well_formed_event(data):
            return False
        handler = self.handlers.get(NAMESPACE, {}).get(data[0])
        if handler is None:
            return False
        wanted = ACK_WANTED.set(digits_end > 2)
        try:
            reply = await handler(sid, *data[1:])
        finally:
            ACK_WANTED.reset(wanted)
        if digits_end > 2 and not socket.closed:
            ack = "3" + text[2:digits_end] + self.packet_class.json.dumps(ack_arguments(reply))
            await socket.send(eio_packet.Packet(eio_packet.MESSAGE, ack))
        return True

    async def emit_to_socket(self, event: str, data: Any, sid: str) -> None:
        """An event for one socket of this node (a reply, a greeting): written to its
        websocket at once, and never published to the other nodes, which cannot
        hold that socket (python-socketio's emit publishes whatever the room)."""
        eio_sid = self.manager.eio_sid_from_sid(sid, NAMESPACE)
        socket = self.eio.sockets.get(eio_sid) if eio_sid is not None else None
        if isinstance(socket, DirectSocket) and socket.direct:
            encoded = encode_event(event, data)
            if encoded is not None:
                if not socket.closed:
                    socket.write_frame(message_frame(encoded))
                return
        await self.emit(event, data, to=sid, ignore_queue=True)

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> None:
        """An Engine.IO handshake: the connection is on its way in from here. Its
        socket becomes one of ours, with the session's bounds (polling.py)."""
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None:
            socket_class = DirectSocket if self.direct_websocket else PollingSocket
            adopt_session(socket, self.session_policy, socket_class)
        await super()._handle_eio_connect(eio_sid, environ)
        if self.on_transport_open is not None:
            self.on_transport_open(eio_sid, environ)

    async def disconnect(
        self, sid: str, namespace: str | None = None, ignore_queue: bool = False
    ) -> None:
        """A server-side disconnect (refused token, timeout, revocation, flood) closes
        the connection too, after the DISCONNECT packet, as Node's
        `socket.disconnect(true)` does: socket.io-client closes it on its own, but a
        client that ignores the packet would keep its TCP connection for ever."""
        namespace = namespace or NAMESPACE
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace)
        await super().disconnect(sid, namespace=namespace, ignore_queue=ignore_queue)
        if eio_sid is not None and not self.manager.is_connected(sid, namespace):
            await self.close_transport(eio_sid)

    async def close_unadmitted(self, eio_sid: str) -> None:
        """The admission deadline passed: a socket is told with a Socket.IO
        disconnect; a connection that never sent CONNECT is just closed."""
        sid = self.manager.sid_from_eio_sid(eio_sid, NAMESPACE)
        if sid is not None and self.manager.is_connected(sid, NAMESPACE):
            await self.disconnect(sid)
        else:
            await self.drop_session(eio_sid)

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        # (A refused CONNECT leaves the connection to its admission deadline, as Node
        # leaves it to its connect timeout: socket.io-client closes it at once on its
        # own, and python-socketio's client stalls if the server closes it meanwhile.)
        await super()._handle_connect(eio_sid, namespace, data)
        # python-socketio holds the handshake's whole WSGI environ (about 1.5 KiB
        # of header copies) for the connection's life, to hand to the connect
        # handler again on a repeated CONNECT; it keeps only what that reads.
        environ = self.environ.get(eio_sid)
        if environ is not None and len(environ) > len(CONNECT_ENVIRON_KEYS):
            self.environ[eio_sid] = {
                key: environ[key] for key in CONNECT_ENVIRON_KEYS if key in environ
            }

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any,
                            data: Any) -> None:
        if not well_formed_event(data):
            await self.refuse(eio_sid, RESERVED_EVENT)
            return
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _handle_event_internal(self, server: Any, sid: str, eio_sid: str, data: Any,
                                     namespace: str | None, id: Any) -> None:
        """python-socketio's dispatch of one event; the handler may ask whether the
        client wants an ack (transport/acks.py)."""
        wanted = ACK_WANTED.set(id is not None)
        try:
            await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)
        finally:
            ACK_WANTED.reset(wanted)

    def start_manager(self) -> None:
        """Start the client manager (the Redis listener) now, not on the first
        connection as python-socketio would: a fresh node must hear the others and
        answer /health truthfully before any client arrives."""
        if not self.manager_initialized:
            self.manager_initialized = True
            self.manager.initialize()

    async def _handle_disconnect(
        self, eio_sid: str, namespace: str | None, reason: Any = None
    ) -> None:
        """The client left the only namespace: its connection has no more use."""
        await super()._handle_disconnect(eio_sid, namespace, reason)
        socket = self.eio.sockets.get(eio_sid)
        closing = socket is None or socket.closing or socket.closed  # (already on its way)
        if not closing and self.manager.sid_from_eio_sid(eio_sid, NAMESPACE) is None:
            await self.close_transport(eio_sid)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        """Answer a polling client's waiting GET as soon as its connection closes.

        python-engineio closes an aborted polling socket without waking the GET
        that waits on its queue, so that request (and the client's exit, and our
        shutdown) hangs for ping interval plus ping timeout; the Node server
        answers it at once. `None` on the queue is engineio's own "nothing more".
        This runs for every Engine.IO close, including a refused handshake. A
        close the server starts itself sends a CLOSE packet that wakes the GET
        anyway, and there an extra entry would keep engineio's queue.join() from
        ever returning.
        """
        socket = self.eio.sockets.get(eio_sid)
        server_close = reason == self.eio.reason.SERVER_DISCONNECT
        if socket is not None and not socket.upgraded and not server_close:
            socket.queue.put_nowait(None)
        await super()._handle_eio_disconnect(eio_sid, reason)
        if self.on_transport_close is not None:
            self.on_transport_close(eio_sid)

    async def close_transports(self) -> None:
        """Close every Engine.IO connection so its client reconnects elsewhere.

        The CLOSE packet goes out first; `None` after it makes the websocket writer
        close the websocket itself (engineio only does that when the client closes),
        so browsers see "transport close" and reconnect, and our shutdown does not
        wait for their heartbeat to time out.
        """
        for eio_sid in list(self.eio.sockets):
            await self.close_transport(eio_sid)

    async def close_transport(self, eio_sid: str) -> None:
        """Close one Engine.IO connection after what was already sent on it."""
        socket = self.eio.sockets.get(eio_sid)
        # A close already under way (a second resync, or a drain meeting one) sends
        # its CLOSE packet once its disconnect handler returns, and ends the
        # transport after it: ending it here first cut the packet off, and the
        # client saw "transport error" instead of the server's close.
        if socket is not None and not socket.closing:
            await socket.close(wait=False, reason=self.eio.reason.SERVER_DISCONNECT)
            self._end_transport(socket, wake_poll=True)

    @staticmethod
    def _end_transport(socket: Any, wake_poll: bool) -> None:
        if isinstance(socket, DirectSocket) and socket.direct:
            socket.end_transport()
        elif socket.upgraded or wake_poll:
            socket.queue.put_nowait(None)  # engineio's websocket writer / poll ends on it

    @property
    def pongs_awaited(self) -> int:
        """Websockets whose client has not yet answered the last PING."""
        return sum(
            1 for socket in self.eio.sockets.values()
            if isinstance(socket, DirectSocket) and socket.awaiting_pong
        )


SOCKET_SERVER = web.AppKey("socket_server", ChatSocketServer)
