"""The websocket transport's hot path: Engine.IO packets written straight to the wire.

python-engineio gives every websocket a writer task that wakes for each packet,
a task per packet received, and a sleeping task per heartbeat; under chat load
those, not our handlers, were where the time went (a profile of stock
python-socketio under the chat benchmark; BENCHMARKS.md). Here a websocket connection
is served by `DirectSocket`, an Engine.IO socket that writes each packet as one
websocket frame the moment it is sent. Writes are synchronous, so a socket's
packets leave in the order they were sent with no queue to keep them in order,
and a broadcast is encoded into one frame that is written to every recipient.
Frames sent to one socket within one turn of the event loop go out in one
system call (websocket_wire.py). Its heartbeat runs on the server's clock
(websocket_heartbeat.py); a polling session upgrading to it goes through the
probe first (upgrade_probe.py). Polling and the handshake stay engineio's.

A client that reads too slowly is disconnected once `WS_MAX_BUFFERED_BYTES` wait
for it (Centrifugo's "slow consumer" rule), so it cannot grow our memory. What a
client sends is bounded too: frames are handled one at a time, at most
`MAX_PENDING_FRAMES` may wait behind the one being handled, and none is handled
once the connection is gone (polling.py has the session's other bounds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import engineio.exceptions
from aiohttp import web
from engineio import packet as eio_packet

from ecigdis_ws.clock import Clock
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.transport.protocol_errors import (
    ENGINEIO_PACKET,
    PENDING_FRAMES,
    ProtocolErrors,
    engineio_problem,
)
from ecigdis_ws.transport.socketio_overrides.inbound import (
    MAX_PENDING_FRAMES,
    open_websocket,
    pending_frames,
    websocket_response,
)
from ecigdis_ws.transport.socketio_overrides.polling import (
    SessionPolicy,
    adopt_session,
    keep_closing,
)
from ecigdis_ws.transport.socketio_overrides.upgrade_probe import probe_upgrade
from ecigdis_ws.transport.socketio_overrides.websocket_heartbeat import HeartbeatSocket
from ecigdis_ws.transport.socketio_overrides.websocket_wire import Wire
from ecigdis_ws.websocket_frames import frame

log = get_logger(__name__)

_DATA = (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)


def message_frame(socketio_packet: str) -> bytes:
    """An Engine.IO MESSAGE carrying an encoded Socket.IO packet, framed once."""
    return frame("4" + socketio_packet)


# Handles a Socket.IO EVENT packet ("42...") read from a socket's websocket
# without engineio's and socketio's general machinery; False: take the general path.
EventShortcut = Callable[["DirectSocket", str], Awaitable[bool]]


class _Sent:
    """What stands for engineio's per-socket asyncio.Queue once a socket writes
    straight to its websocket: nothing waits in it, so joining returns at once;
    a packet engineio puts goes out at once, and `None` (engineio's "no more")
    closes the websocket. About 3 KiB less per connection than the queue."""

    __slots__ = ("_socket",)

    def __init__(self, socket: DirectSocket) -> None:
        self._socket = socket

    def put_nowait(self, pkt: eio_packet.Packet | None) -> None:
        if pkt is None:
            self._socket.end_transport()
        elif self._socket._wire is not None:
            self._socket._wire.write(frame(pkt.encode()))

    async def put(self, pkt: eio_packet.Packet | None) -> None:
        self.put_nowait(pkt)

    async def join(self) -> None:
        return None

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0


class DirectSocket(HeartbeatSocket):
    """An Engine.IO socket on a websocket, sending without a queue or writer task.

    Until its websocket is established it is a polling session (PollingSocket);
    `DirectWebSocket` switches its class when the websocket takes over. Its
    heartbeat then runs on the server's clock (HeartbeatSocket).
    """

    _response: web.WebSocketResponse | None

    def adopt(self, policy: SessionPolicy) -> None:
        super().adopt(policy)
        self.adopt_direct()

    def adopt_direct(self) -> None:
        """A PollingSocket becoming a DirectSocket (its class changed) keeps its bounds."""
        self._wire = None
        self._response = None
        self.adopt_heartbeat()

    @property
    def direct(self) -> bool:
        return self._wire is not None

    def write_frame(self, data: bytes) -> None:
        """Write a pre-encoded frame (a broadcast's, shared by every recipient)."""
        assert self._wire is not None
        if not self.closed:
            self._wire.write(data)

    async def send(self, pkt: eio_packet.Packet) -> None:
        if self._wire is None:
            await super().send(pkt)
        elif pkt.packet_type == eio_packet.PING:
            return  # engineio's pinger, started at the handshake: the clock's owns it now
        elif not self.closed:
            self._wire.write(frame(pkt.encode()))

    def end_transport(self) -> None:
        """Close the websocket itself, after whatever was written before."""
        response = self._response
        if response is not None and not response.closed:
            # A task started now runs after the corked frames are flushed.
            keep_closing(response.close())

    def _overflowed(self) -> None:
        log.warning("disconnected a client that reads too slowly", sid=self.sid)

    async def _websocket_handler(self, ws: DirectWebSocket) -> None:
        """engineio's websocket driver hands the socket over here: a polling
        session upgrading, or a new connection that went through engineio (one the
        websocket entry left to it, websocket_entry.py)."""
        response = ws.response
        if self.connected and not await probe_upgrade(self, response):
            return
        assert ws.request is not None and ws.request.transport is not None
        await self.serve(response, ws.request.transport, type(ws))

    async def serve(
        self, response: web.WebSocketResponse, transport: asyncio.BaseTransport,
        driver: type[DirectWebSocket],
    ) -> None:
        """The websocket's whole life in this one coroutine, the only one of ours
        suspended while the connection is idle: it takes the socket over, reads
        every frame, and closes the socket when the websocket ends.

        No timeout per read (that costs a timer per packet): a client that goes
        silent misses its pong, and the heartbeat closes the websocket.
        """
        wire = self._take_over(response, transport, driver.max_buffered)
        limit = self.server.max_http_buffer_size
        events = driver.events
        try:
            while True:
                try:
                    message = await response.receive()
                except ConnectionError:
                    # aiohttp answers PING frames itself, inside receive(): a client
                    # that sends them without reading and then resets fails that write.
                    log.warning("a websocket's connection was lost while aiohttp answered "
                                "its PING frames", sid=self.sid)
                    return
                if message.type not in _DATA or len(message.data) > limit:
                    return  # closed by the client, a protocol error, or too large
                if transport.is_closing() or self.gone:
                    return  # (frames read before the client left are not handled)
                if pending_frames(response) > MAX_PENDING_FRAMES:
                    driver.protocol_errors.refuse(PENDING_FRAMES, self.sid)
                    return
                data = message.data
                if type(data) is str and data.startswith("42") and await events(self, data):
                    pass  # (a "42" frame is a valid Engine.IO MESSAGE)
                elif not await self._receive_other(data, driver.protocol_errors):
                    return
                if self.closed:
                    return
        finally:
            wire.close()
            self._stop_heartbeat()
            # The session ends first: the closing handshake may wait on the client.
            await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
            if not response.closed:
                await response.close()

    def _take_over(
        self, response: web.WebSocketResponse, transport: asyncio.BaseTransport,
        max_buffered: int,
    ) -> Wire:
        """From now on packets go straight to the websocket, heartbeats on the clock."""
        self.connected = True
        self.upgraded = True
        self._response = response
        wire = Wire(transport, max_buffered, self._overflowed)
        # What was queued before the websocket took over goes first, then all
        # later packets straight to the wire: the order is kept.
        while not self.queue.empty():
            queued = self.queue.get_nowait()
            self.queue.task_done()
            if queued is not None:
                wire.write(frame(queued.encode()))
        self._wire = wire
        self.queue = _Sent(self)
        self._start_heartbeat()
        return wire

    async def _receive_other(self, data: str | bytes, protocol_errors: ProtocolErrors) -> bool:
        """A frame the event fast path did not take, checked then handed to
        engineio; False: the websocket is to be closed."""
        problem = engineio_problem(data)
        if problem is not None:
            protocol_errors.refuse(problem, self.sid)
            return False
        try:
            pkt = eio_packet.Packet(encoded_packet=data)
        except RecursionError:  # (engineio parses every packet's data as JSON)
            protocol_errors.refuse(ENGINEIO_PACKET, self.sid)
            return False
        try:
            await self.receive(pkt)
        except engineio.exceptions.UnknownPacketError:
            return True
        except engineio.exceptions.SocketIsClosedError:
            return False
        return True


class DirectWebSocket:
    """engineio's websocket driver for aiohttp, serving the socket as a DirectSocket.

    Replaces `engineio.async_drivers.aiohttp.WebSocket` in our server's own copy
    of the driver table (see ChatSocketServer).
    """

    # Set per server by `for_server`:
    max_buffered = 1 << 20
    events: EventShortcut  # the Socket.IO event fast path
    policy: SessionPolicy  # the server's: its clock, for heartbeats, and the bounds
    protocol_errors: ProtocolErrors  # the server's, for frames that break the protocol

    def __init__(self, handler: Any, server: Any) -> None:
        self.handler = handler
        self.server = server
        self.request: web.Request | None = None
        self.response = websocket_response(server.max_http_buffer_size)

    @property
    def clock(self) -> Clock:
        return self.policy.clock

    @classmethod
    def for_server(
        cls, max_buffered: int, events: EventShortcut, policy: SessionPolicy,
        protocol_errors: ProtocolErrors,
    ) -> type[DirectWebSocket]:
        return type(cls.__name__, (cls,), {
            "max_buffered": max_buffered, "events": staticmethod(events), "policy": policy,
            "protocol_errors": protocol_errors,
        })

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        socket = self.handler.__self__
        self.request = environ["aiohttp.request"]  # (not the environ: see _handle_connect)
        if await open_websocket(self.request, self.response) is None:
            await socket.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
            return self.response
        if not isinstance(socket, DirectSocket):
            # A polling session (or engineio's own socket): the websocket takes it over.
            adopt_session(socket, self.policy)
            socket.__class__ = DirectSocket
            socket.adopt_direct()
        await socket._websocket_handler(self)
        return self.response
