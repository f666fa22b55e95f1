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
system call. Polling, the handshake and the upgrade probe stay engineio's.

A client that reads too slowly is disconnected once `WS_MAX_BUFFERED_BYTES` wait
for it (Centrifugo's "slow consumer" rule), so it cannot grow our memory. What a
client sends is bounded too: frames are handled one at a time, at most
`MAX_PENDING_FRAMES` may wait behind the one being handled, and none is handled
once the connection is gone (polling.py has the session's other bounds).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aiohttp
import engineio.exceptions
from aiohttp import web
from engineio import packet as eio_packet

from ecigdis_ws.clock import Clock, Timer
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
    OUTSIDE_ANY_EVENT,
    PollingSocket,
    SessionPolicy,
    adopt_session,
    keep_closing,
)
from ecigdis_ws.websocket_frames import frame

log = get_logger(__name__)

_PROBE = "probe"
# Heartbeats fall due on a grid of this step (wall clock), so the pings of every
# socket due within one step go out in one loop turn, and their pongs come back
# together: an idle node wakes once a step, not once per socket (40 times a
# second with 1,000 sockets). A ping up to this much later than PING_INTERVAL_MS
# is well within what clients allow (the interval plus PING_TIMEOUT_MS).
HEARTBEAT_STEP_S = 1.0
_DATA = (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)
def message_frame(socketio_packet: str) -> bytes:
    """An Engine.IO MESSAGE carrying an encoded Socket.IO packet, framed once."""
    return frame("4" + socketio_packet)


class _Corked:
    """The connections written to in this turn of the event loop, flushed together
    by one callback: a message to a conversation of five schedules one callback,
    not five."""

    __slots__ = ("_loop", "_wires")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._wires: list[_Wire] = []

    def add(self, wire: _Wire) -> None:
        if not self._wires:
            # (outside the sender's context: an overflow's line names the slow client)
            self._loop.call_soon(self._flush, context=OUTSIDE_ANY_EVENT)
        self._wires.append(wire)

    def _flush(self) -> None:
        wires, self._wires = self._wires, []
        for wire in wires:
            wire.flush()


# One per event loop (tests run several loops in turn, one after the other).
_corked: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Corked] = (
    weakref.WeakKeyDictionary()
)


def _corked_for(loop: asyncio.AbstractEventLoop) -> _Corked:
    corked = _corked.get(loop)
    if corked is None:
        corked = _corked[loop] = _Corked(loop)
    return corked


class _Wire:
    """The connection's byte stream, with writes corked for one loop turn."""

    __slots__ = ("_corked", "_limit", "_on_overflow", "_pending", "_transport", "closed")

    def __init__(
        self, transport: asyncio.BaseTransport, limit: int, on_overflow: Callable[[], None]
    ) -> None:
        # (uvloop's transports do not subclass asyncio's classes, but behave alike)
        self._transport = cast(asyncio.WriteTransport, transport)
        self._pending: list[bytes] = []
        self._corked = _corked_for(asyncio.get_running_loop())
        self._limit = limit
        self._on_overflow = on_overflow
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if not self._pending:
            self._corked.add(self)
        self._pending.append(data)

    def close(self) -> None:
        """No more writes; what was written before still goes out (a CONNECT_ERROR
        or DISCONNECT written just before the reader closed the socket)."""
        self.flush()
        self.closed = True

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        if self.closed or self._transport.is_closing():
            return
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        if self._transport.get_write_buffer_size() > self._limit:
            self.closed = True
            self._transport.abort()  # the reader sees the connection lost, and cleans up
            self._on_overflow()


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


def on_step(now: float, delay: float) -> float:
    """`delay`, lengthened so that it ends on the heartbeat grid."""
    return delay + (-(now + delay)) % HEARTBEAT_STEP_S


class DirectSocket(PollingSocket):
    """An Engine.IO socket on a websocket, sending without a queue or writer task.

    Until its websocket is established it is a polling session (PollingSocket);
    `DirectWebSocket` switches its class when the websocket takes over.

    Its heartbeat runs on the server's injected clock, as every other timer does:
    a PING every ping interval, and the connection closed when no PONG came back
    within the ping timeout (tests move the clock instead of waiting).
    """

    _wire: _Wire | None
    _response: web.WebSocketResponse | None
    _clock: Clock
    _ping_timer: Timer | None  # the next PING
    _pong_timer: Timer | None  # set while a PING waits for its PONG

    def adopt(self, policy: SessionPolicy) -> None:
        super().adopt(policy)
        self.adopt_direct()

    def adopt_direct(self) -> None:
        """A PollingSocket becoming a DirectSocket (its class changed) keeps its bounds."""
        self._wire = None
        self._response = None
        self._clock = self._policy.clock
        self._ping_timer = None
        self._pong_timer = None

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

    # Heartbeats on the clock's timers, not a sleeping task per socket.
    def _start_heartbeat(self) -> None:
        delay = on_step(self._clock.now(), self.server.ping_interval)
        self._ping_timer = self._clock.call_later(delay, self._ping)

    def schedule_ping(self) -> None:
        """A PONG came: the next PING one interval from now."""
        if self._wire is None:
            super().schedule_ping()
        elif self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
            self._start_heartbeat()
        # (a PONG to a PING sent before the websocket took over: nothing waits on it)

    def _ping(self) -> None:
        self._ping_timer = None
        if not self.closing and not self.closed and self._wire is not None:
            self._wire.write(frame(eio_packet.Packet(eio_packet.PING).encode()))
            self._pong_timer = self._clock.call_later(self.server.ping_timeout, self._pong_missed)

    def _pong_missed(self) -> None:
        self._pong_timer = None
        if not self.closed:
            log.info("closing a websocket whose client missed its heartbeat", sid=self.sid)
            keep_closing(self._close_for_silence())

    async def _close_for_silence(self) -> None:
        await self.close(wait=False, abort=False, reason=self.server.reason.PING_TIMEOUT)
        self.end_transport()

    @property
    def awaiting_pong(self) -> bool:
        return self._wire is not None and self._pong_timer is not None

    def _stop_heartbeat(self) -> None:
        for timer in (self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._pong_timer = None

    async def check_ping_timeout(self) -> bool:
        if self._wire is None:
            result: bool = await super().check_ping_timeout()
            return result
        return not self.closed  # (the clock's pong timer closes a silent client)

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
        if self.connected and not await self._probe_upgrade(response):
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
    ) -> _Wire:
        """From now on packets go straight to the websocket, heartbeats on the clock."""
        self.connected = True
        self.upgraded = True
        self._response = response
        wire = _Wire(transport, max_buffered, self._overflowed)
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

    def _silence_limit_s(self) -> float:
        """A client that sends nothing, not even a pong, this long is gone."""
        return float(self.server.ping_interval + self.server.ping_timeout)

    async def _probe_upgrade(self, response: web.WebSocketResponse) -> bool:
        """The polling → websocket upgrade (Engine.IO v4): probe, then UPGRADE."""
        self.upgrading = True
        try:
            probe = await self._next_packet(response)
            if probe is None or probe.packet_type != eio_packet.PING or probe.data != _PROBE:
                return False
            await response.send_str(eio_packet.Packet(eio_packet.PONG, data=_PROBE).encode())
            await self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # ends the pending poll
            upgrade = await self._next_packet(response)
            return upgrade is not None and upgrade.packet_type == eio_packet.UPGRADE
        except ConnectionError:  # (lost while aiohttp answered a PING frame)
            return False
        finally:
            self.upgrading = False
            self.upgrade_ended()

    async def _next_packet(self, response: web.WebSocketResponse) -> eio_packet.Packet | None:
        """The next frame of an upgrade (whose deadline, PollingSocket's, bounds the wait)."""
        try:
            message = await response.receive(timeout=self._silence_limit_s())
        except TimeoutError:
            return None
        if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            return None
        return eio_packet.Packet(encoded_packet=message.data)


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
