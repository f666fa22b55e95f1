"""Fan-out between nodes over Redis pub/sub: python-socketio's AsyncRedisManager
with its channel traffic routed, signed and listened to by this project.

The base class delivers to this node's sockets first and then publishes JSON
(never pickle) for the other nodes. What this subclass adds:
- routing (fanout/channels.py): with FANOUT_CHANNELS=per-room a conversation's or
  a user's room has its own channel, which a node reads only while it has sockets
  in the room (or long-polls watching it), so a node reads the traffic of its own
  rooms, not the whole cluster's; with FANOUT_CHANNELS=single every emit goes on
  one channel that every node reads (the previous version's way). An emit to a
  socket of this node is never published;
- HMAC-SHA256 on every published message: a forged or malformed message on a
  channel (anyone who can reach Redis can publish) is logged and dropped, never
  executed as an emit or a disconnect; this node's own messages, which come back
  on the channels it reads, are recognised by their first bytes and skipped
  before any parsing;
- a publishing connection with a socket timeout; the listening connections
  (cluster/channel_listener.py) have none, and on a Redis Cluster use sharded
  pub/sub (SSUBSCRIBE/SPUBLISH), so that each channel's traffic stays on its shard;
- reconnection with capped exponential backoff, a `listening` flag for /health,
  and `on_recovered` once every channel is subscribed again after a loss (what
  was published meanwhile never reached this node's clients: they resync).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import socketio
from redis.asyncio.cluster import RedisCluster

from ecigdis_ws.clock import Clock
from ecigdis_ws.cluster.channel_listener import ChannelListener
from ecigdis_ws.cluster.channel_subscriptions import Subscriptions
from ecigdis_ws.cluster.command_batches import CommandBatches
from ecigdis_ws.cluster.redis_connection import RedisClient, master_of, redis_client
from ecigdis_ws.fanout.channels import CHANNEL_KINDS, ChannelNames, one_part, routes
from ecigdis_ws.fanout.notifier import DeliveryNotifier
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.observability.metrics import Metrics
from ecigdis_ws.settings import is_cluster_url
from ecigdis_ws.transport.socketio_overrides.managers import NAMESPACE, DirectEmitManager

log = get_logger(__name__)

# Reconnect attempts back off from the first to the last delay, doubling.
FIRST_RETRY_S = 0.2
LAST_RETRY_S = 2.0
SIGNATURE_VERSION = 1


def sign(key: bytes, body: str, host_id: str) -> str:
    """The envelope starts with the publishing node's id (see `echo_prefix`); it is
    not signed, and need not be: it only ever makes a node skip a message."""
    digest = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"h": host_id, "v": SIGNATURE_VERSION, "sig": digest, "body": body})


def echo_prefix(host_id: str) -> bytes:
    """How every message this node signs begins."""
    return sign(b"", "", host_id).split(', "v"')[0].encode()


def verify(key: bytes, raw: bytes | str) -> dict[str, Any] | None:
    """The message a node published, or None for anything forged or malformed."""
    try:
        envelope = json.loads(raw)
        body = envelope["body"]
        expected = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
        if envelope.get("v") != SIGNATURE_VERSION or not hmac.compare_digest(
            expected, str(envelope["sig"])
        ):
            return None
        message = json.loads(body)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None  # (RecursionError: anyone who can reach Redis may nest past the parser)
    return message if isinstance(message, dict) and "method" in message else None



# DirectEmitManager lands between the pub/sub layer and AsyncManager in the MRO,
# so this node's deliveries, local or from a channel, take the direct path.
class ClusterRedisManager(socketio.AsyncRedisManager, DirectEmitManager):  # type: ignore[misc]
    def __init__(
        self,
        url: str,
        names: ChannelNames,
        *,
        key: bytes,
        timeout_s: float,
        clock: Clock,
        linger_s: float,
        metrics: Metrics,
        notifier: DeliveryNotifier,
        # Called when the channels are back after a loss: what other nodes
        # published meanwhile never reached this node's clients, so they must
        # catch up.
        on_recovered: Callable[[], Awaitable[None]],
    ) -> None:
        self.notifier = notifier
        self.deliveries = metrics.deliveries
        super().__init__(url=url, channel=names.everyone)
        self.redis: RedisClient | None = None
        self._names = names
        self._key = key
        self._timeout_s = timeout_s
        self._sharded = is_cluster_url(url)
        self._echo = echo_prefix(self.host_id)
        # One counter per channel kind, looked up once, not per message read.
        self._received = {kind: metrics.fanout_received.labels(kind) for kind in CHANNEL_KINDS}
        always = tuple(dict.fromkeys((names.everyone, names.of_node(self.host_id))))
        self.subscriptions = Subscriptions(clock, linger_s, always)
        self._listener = ChannelListener(url, self._sharded, timeout_s, self.subscriptions)
        self._publisher = CommandBatches(self._publishing_client, self._publish_failed)
        self._publish_command = "SPUBLISH" if self._sharded else "PUBLISH"
        metrics.fanout_subscriptions.set_function(
            lambda: float(len(self.subscriptions.wanted)) if self.listening else 0.0)
        self.listening = False
        self.dropped = 0  # forged or malformed channel messages seen
        self.on_recovered = on_recovered
        self._lost = False
        self._retry_s = FIRST_RETRY_S

    # -- which channels this node reads ----------------------------------------------

    def basic_enter_room(self, sid: str, namespace: str, room: str | None,
                         eio_sid: str | None = None) -> None:
        new = room is not None and not self.rooms.get(namespace, {}).get(room)
        super().basic_enter_room(sid, namespace, room, eio_sid)
        if new and room is not None:
            self._hold(room)

    def basic_leave_room(self, sid: str, namespace: str, room: str | None) -> None:
        had = room is not None and room in self.rooms.get(namespace, {})
        super().basic_leave_room(sid, namespace, room)
        if had and room is not None and room not in self.rooms.get(namespace, {}):
            self._release(room)

    def watch(self, rooms: Iterable[str]) -> Callable[[], None]:
        """Read these rooms' channels (for a long-poll) until the returned call."""
        held = list(rooms)
        for room in held:
            self._hold(room)

        def release() -> None:
            for room in held:
                self._release(room)
            held.clear()
        return release

    async def room_ready(self, room: str) -> None:
        """Return once Redis confirmed this node subscribed to the room's channel
        (within the Redis timeout: if Redis is down, recovery resyncs the clients)."""
        channel = self._names.of_room(room)
        waiting = None if channel is None else self.subscriptions.ready(channel)
        if waiting is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiting, self._timeout_s)

    def _hold(self, room: str) -> None:
        channel = self._names.of_room(room)
        if channel is not None:
            self.subscriptions.hold(channel)

    def _release(self, room: str) -> None:
        channel = self._names.of_room(room)
        if channel is not None:
            self.subscriptions.release(channel)

    # -- publishing ------------------------------------------------------------------

    def _redis_connect(self) -> None:
        """The publishing connection (the listener makes its own)."""
        if self.redis is None:
            self.redis = redis_client(self.redis_url, self._timeout_s, self._timeout_s)
        self.connected = True

    async def _publish(self, data: Any) -> None:
        """Queued for the next pipeline (cluster/command_batches.py): the other
        nodes catch up from the database (`since`) if it fails; the local
        delivery already happened."""
        items = routes(self._names, data, lambda sid: self.is_connected(sid, NAMESPACE))
        if items:
            self._publisher.send(
                [(self._publish_command, channel,
                  sign(self._key, self.json.dumps(message), self.host_id))
                 for channel, message in items])

    async def flush_publishes(self) -> None:
        """Wait until what was published so far went to Redis (or failed)."""
        await self._publisher.flush()

    def _publishing_client(self) -> RedisClient:
        if not self.connected:
            self._redis_connect()
        assert self.redis is not None
        return self.redis

    def _publish_failed(self, count: int, reason: str) -> None:
        self.connected = False  # a new client next time (the old may be broken)
        log.warning("fan-out to other nodes failed", reason=reason, messages=count)

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        if "part" in message:  # one room of a list emit (see fanout/channels.routes)
            rooms = self.rooms.get(message.get("namespace") or NAMESPACE, {})
            part = one_part(message, lambda room: rooms.get(room, {}))
            if part is None:
                return
            message = part
        await super()._handle_emit(message)

    # -- listening -------------------------------------------------------------------

    async def _listen(self) -> AsyncIterator[dict[str, Any]]:
        """What python-socketio's listening task handles: every verified message
        of another node, from one listener session after another."""
        while True:
            try:
                async for channel, raw in self._listener.session(self._subscribed):
                    message = self._accept(channel, raw)
                    if message is not None:
                        yield message
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # redis-py raises several unrelated types
                log.warning("fan-out channel lost; reconnecting",
                            reason=str(exc) or type(exc).__name__, retry_in_s=self._retry_s)
            self.listening = False
            await asyncio.sleep(self._retry_s * (0.5 + random.random()))
            self._retry_s = min(self._retry_s * 2, LAST_RETRY_S)

    async def _subscribed(self) -> None:
        self.listening = True
        self._retry_s = FIRST_RETRY_S
        log.info("listening on the fan-out channel", channel=self.channel,
                 per_room=self._names.per_room)
        if self._lost and self.on_recovered is not None:
            await self.on_recovered()
        self._lost = True  # from here on, a session that ends is a loss

    def _accept(self, channel: bytes, raw: bytes) -> dict[str, Any] | None:
        self._received[self._names.kind(channel.decode())].inc()
        if raw.startswith(self._echo):
            return None  # this node's own: delivered here when it was sent
        message = verify(self._key, raw)
        if message is None:
            self.dropped += 1
            log.warning("dropped a forged or malformed fan-out message")
        return message

    async def _channel_node(self) -> tuple[RedisClient, dict[str, Any]]:
        """The publishing client, and where a PING goes: on a Redis Cluster the
        master serving the node-wide channel's slot (not every node, redis-py's
        default for PING: a dead replica changes nothing for this server)."""
        client = self._publishing_client()
        if isinstance(client, RedisCluster):
            return client, {"target_nodes": await master_of(client, self.channel)}
        return client, {}

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout_s):
                client, where = await self._channel_node()
                await client.ping(**where)
        except Exception:
            self.connected = False
            return False
        return self.listening
