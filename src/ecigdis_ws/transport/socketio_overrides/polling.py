"""Every Engine.IO session, polling or on its way to a websocket, with its bounds.

python-engineio keeps no limit on what a session holds: its outgoing queue grows
for as long as the client does not fetch it, a PONG resets the heartbeat whether
or not the client ever saw the PING, any number of upgrades may wait on one
session for as long as they like, and a POST's packets are handled to the end
after its client left. Each of those let one address hold the server's memory or
file descriptors (docs/security.md). `PollingSocket` is engineio's socket with
those bounds; every session becomes one at its handshake
(`ChatSocketServer._handle_eio_connect`), and `DirectSocket` (websocket.py)
builds on it once a websocket takes over.

- The outgoing queue (`PacketQueue`) is bounded in bytes and packets
  (`TransportLimits`); a client that falls that far behind is disconnected, as a
  slow websocket is.
- A PONG counts only as the answer to a PING the client fetched.
- One request of each kind at a time: a second GET while one waits, or a second
  POST while one is handled, closes the session (Node's engine.io: "overlap from
  client").
- One upgrade at a time, each within `upgrade_timeout_s` of its request, and
  each counted with its address's unauthenticated connections until it is done.
- A POST's packets stop being handled once its connection is gone.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import engineio.async_socket
import engineio.exceptions
import engineio.payload
from engineio import packet as eio_packet

from ecigdis_ws.clock import Clock, Timer
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.transport.limits import MAX_PACKETS_PER_POST

log = get_logger(__name__)

# Callbacks the transport schedules for itself (a flush, a close) run in this
# context, not in the context of the event that happened to cause them: their log
# lines name the socket they are about, never the sender whose event was running.
OUTSIDE_ANY_EVENT = contextvars.Context()
# Closes the server starts from a synchronous path, kept referenced until done.
_closing: set[asyncio.Future[Any]] = set()


def keep_closing(work: Any) -> None:
    """Run a close in a task of its own, referenced until it finishes."""
    task = asyncio.ensure_future(work)
    _closing.add(task)
    task.add_done_callback(_closing.discard)


@dataclass(frozen=True)
class TransportLimits:
    """What one session may have waiting for its client before it is cut."""

    max_buffered_bytes: int
    max_buffered_packets: int


class UpgradeGate:
    """How a session's upgrades are admitted: set by the transport (socket_events)."""

    def admit(self, key: str, environ: Mapping[str, Any]) -> Any:
        """None: admitted and counted under `key`; else the response refusing it."""
        return None

    def done(self, key: str) -> None:
        """The upgrade under `key` ended (upgraded, failed or abandoned)."""

    def refuse(self, status: int, message: str) -> Any:
        """The response refusing an upgrade that breaks the protocol."""
        return {"status": f"{status} BAD REQUEST", "headers": [("Content-Type", "text/plain")],
                "response": message.encode()}


@dataclass
class SessionPolicy:
    clock: Clock
    limits: TransportLimits
    upgrade_timeout_s: float
    upgrades: UpgradeGate


def _size(pkt: eio_packet.Packet | None) -> int:
    """About what a packet costs to hold: its data's length (its encoding, near enough)."""
    if pkt is None:
        return 0
    data = pkt.data
    if isinstance(data, (str, bytes)):
        return len(data) + 1
    return len(pkt.encode())


class PollingPayload(engineio.payload.Payload):  # type: ignore[misc]
    """engineio's payload decoder, taking as many packets as the polling limits
    let through (MAX_PACKETS_PER_POST, checked on the raw body by limits.py before
    this runs); engineio's own default, 16, would refuse a socket.io-client batch
    the limits allow. A subclass, so engineio's module is not changed for others."""

    max_decode_packets = MAX_PACKETS_PER_POST


class PacketQueue(asyncio.Queue[eio_packet.Packet | None]):
    """engineio's per-session queue, counting the bytes it holds (asyncio.Queue's
    `_put` and `_get` hooks see every item in and out)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self._sizes: deque[int] = deque()

    def _put(self, item: eio_packet.Packet | None) -> None:
        size = _size(item)
        self.bytes += size
        self._sizes.append(size)
        super()._put(item)

    def _get(self) -> eio_packet.Packet | None:
        self.bytes -= self._sizes.popleft()
        item: eio_packet.Packet | None = super()._get()
        return item

    def drop_waiting(self) -> None:
        """Forget every packet waiting (a client cut for falling behind)."""
        while not self.empty():
            self.get_nowait()
            self.task_done()


class RefusedRequest(engineio.exceptions.EngineIOError):  # type: ignore[misc]
    """A request that ends its session: a second GET or POST while one of the same
    kind is in progress, or a body that does not decode. The session is closed
    before this is raised, so engineio answers 400 at once (its own close would
    wait for a client that may never fetch the CLOSE packet)."""


class PollingSocket(engineio.async_socket.AsyncSocket):  # type: ignore[misc]
    """engineio's socket with bounds on what one session can hold (module docstring)."""

    _policy: SessionPolicy
    _ping_fetched: bool  # the client fetched the last PING (or none was sent yet)
    _getting: bool
    _posting: bool
    _upgrade_deadline: Timer | None
    _upgrade_transport: asyncio.Transport | None
    # (engineio's attributes, typed here for mypy)
    last_ping: float | None
    connected: bool
    closed: bool
    closing: bool
    upgraded: bool
    upgrading: bool
    queue: Any  # a PacketQueue; DirectSocket's stand-in once a websocket takes over

    def adopt(self, policy: SessionPolicy) -> None:
        """Take over a socket engineio created (its class is changed to ours)."""
        self._policy = policy
        self._ping_fetched = True
        self._getting = self._posting = False
        self._upgrade_deadline = None
        self._upgrade_transport = None
        queue = PacketQueue()
        old = self.queue
        while not old.empty():
            queue.put_nowait(old.get_nowait())
        self.queue = queue

    @property
    def gone(self) -> bool:
        return bool(self.closed or self.closing)

    # -- the outgoing queue ----------------------------------------------------------

    async def send(self, pkt: eio_packet.Packet) -> None:
        if self.gone and pkt.packet_type != eio_packet.CLOSE:
            return
        await super().send(pkt)
        queue = self.queue
        if isinstance(queue, PacketQueue) and self._over_limit(queue):
            self._fell_behind(queue)

    def _over_limit(self, queue: PacketQueue) -> bool:
        limits = self._policy.limits
        return (queue.bytes > limits.max_buffered_bytes
                or queue.qsize() > limits.max_buffered_packets)

    def _fell_behind(self, queue: PacketQueue) -> None:
        """Cut a client that does not fetch what is sent to it: what waited is
        dropped at once, the session closed, a waiting poll answered."""
        waiting, size = queue.qsize(), queue.bytes
        queue.drop_waiting()
        if not self.gone:
            asyncio.get_running_loop().call_soon(
                self._close_behind, waiting, size, context=OUTSIDE_ANY_EVENT
            )

    def _close_behind(self, packets: int, size: int) -> None:
        log.warning("disconnected a client that reads too slowly", sid=self.sid,
                    packets=packets, bytes=size)
        # (closing wakes a waiting poll: ChatSocketServer._handle_eio_disconnect)
        keep_closing(self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR))

    async def _refuse(self, message: str) -> RefusedRequest:
        log.info("closed a session for a request that breaks the protocol", sid=self.sid,
                 problem=message)
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
        return RefusedRequest(message)

    # -- heartbeats ------------------------------------------------------------------

    async def poll(self) -> list[eio_packet.Packet]:
        """engineio's wait for a GET's packets (upgrades never come here): one GET
        at a time, and a PING fetched is noted for the heartbeat."""
        if self._getting:
            raise await self._refuse("a GET is already waiting on this session")
        self._getting = True
        try:
            packets: list[eio_packet.Packet] = await super().poll()
        finally:
            self._getting = False
        if any(pkt.packet_type == eio_packet.PING for pkt in packets):
            self._ping_fetched = True
        return packets

    def schedule_ping(self) -> None:
        """A PONG (or the handshake): the next PING one interval from now, unless
        this PONG answers a PING the client never fetched; then engineio's ping
        timeout runs on and closes the session."""
        if self.last_ping and not self._ping_fetched:
            return
        self._ping_fetched = False
        super().schedule_ping()

    # -- requests --------------------------------------------------------------------

    async def handle_post_request(self, environ: dict[str, Any]) -> None:
        """engineio's, but its packets stop being handled once the POST's connection
        or the session is gone: a body of queued work does not outlive its client."""
        if self._posting:
            raise await self._refuse("a POST is already being handled on this session")
        self._posting = True
        try:
            length = int(environ.get("CONTENT_LENGTH", "0"))
            if length > self.server.max_http_buffer_size:
                raise await self._refuse("the body is larger than maxPayload")
            body = await environ["wsgi.input"].read(length)
            try:
                packets = PollingPayload(encoded_payload=body.decode()).packets
            except (ValueError, RecursionError):  # (not UTF-8, or no Engine.IO payload)
                raise await self._refuse("the body is not an Engine.IO payload") from None
            request = environ.get("aiohttp.request")
            connection = request.transport if request is not None else None
            for pkt in packets:
                if self.gone or connection is None or connection.is_closing():
                    return
                try:
                    await self.receive(pkt)
                except engineio.exceptions.UnknownPacketError:
                    # (a PING, NOOP or OPEN from the client: ignored, as on a websocket;
                    # raised, engineio's close would wait for a poll that may never come)
                    continue
        finally:
            self._posting = False

    # -- upgrades --------------------------------------------------------------------

    @property
    def _upgrade_key(self) -> str:
        return f"{self.sid}/upgrade"

    async def _upgrade_websocket(self, environ: dict[str, Any]) -> Any:
        """One upgrade at a time, counted with its address's unauthenticated
        connections, and given up after `upgrade_timeout_s` (Node's upgradeTimeout)."""
        gate = self._policy.upgrades
        if self._upgrade_deadline is not None or self.upgrading:
            return gate.refuse(400, "an upgrade of this session is already in progress")
        refused = gate.admit(self._upgrade_key, environ)
        if refused is not None:
            return refused
        request = environ.get("aiohttp.request")
        self._upgrade_transport = request.transport if request is not None else None
        self._upgrade_deadline = self._policy.clock.call_later(
            self._policy.upgrade_timeout_s, self._upgrade_expired
        )
        try:
            return await super()._upgrade_websocket(environ)
        finally:
            self.upgrade_ended()

    def upgrade_ended(self) -> None:
        """The upgrade succeeded or failed: no longer counted, no deadline."""
        deadline, self._upgrade_deadline = self._upgrade_deadline, None
        self._upgrade_transport = None
        if deadline is not None:
            deadline.cancel()
            self._policy.upgrades.done(self._upgrade_key)

    def _upgrade_expired(self) -> None:
        """The deadline passed: an upgrade still unfinished is given up (its
        connection aborted; the session goes on polling)."""
        transport = self._upgrade_transport
        upgraded = self.upgraded
        self._upgrade_deadline = None  # (fired: nothing to cancel)
        self._upgrade_transport = None
        self._policy.upgrades.done(self._upgrade_key)
        if not upgraded and transport is not None and not transport.is_closing():
            log.info("gave up an upgrade that did not finish in time", sid=self.sid)
            transport.abort()

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        """engineio's, and an upgrade waiting on the session is aborted with it."""
        await super().close(wait=wait, abort=abort, reason=reason)
        transport = self._upgrade_transport
        if transport is not None and not self.upgraded and not transport.is_closing():
            transport.abort()


def adopt_session(
    socket: Any, policy: SessionPolicy, socket_class: Callable[..., Any] = PollingSocket
) -> None:
    """Make engineio's new socket one of ours."""
    if not isinstance(socket, PollingSocket):
        socket.__class__ = socket_class
        socket.adopt(policy)
