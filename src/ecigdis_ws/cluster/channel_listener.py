"""Reading the fan-out channels from Redis (ClusterRedisManager publishes on them).

On one Redis (or one found through Sentinel): one connection, SUBSCRIBE and
PUBLISH. On a Redis Cluster: sharded pub/sub, SSUBSCRIBE and SPUBLISH, so a
channel lives on the shard serving its slot and only that shard carries its
messages; one connection per shard master that serves a wanted channel.

A `session` lasts as long as every connection of it does: any loss (a connection
error, Redis restarting, a master failing over, a slot moving away, which Redis
tells with an unasked SUNSUBSCRIBE) ends it with an exception, and the caller
starts a new one, which learns the topology afresh and subscribes everything
wanted. Messages published meanwhile are lost to this node: the caller makes its
clients resync, as with the single channel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from ecigdis_ws.cluster.redis_connection import listener_client, redis_client
from ecigdis_ws.observability.log_setup import get_logger

log = get_logger(__name__)

# Messages read from Redis and not yet handled: past this, the readers wait, and
# Redis buffers (up to its client-output-buffer-limit for pub/sub) instead of us.
QUEUE_LIMIT = 10_000
# Channels named in one SUBSCRIBE or UNSUBSCRIBE (on one Redis: a connect storm's
# thousands of user channels go in a few commands, not one each).
CHANNELS_PER_COMMAND = 500

Message = tuple[bytes, bytes]  # (channel, data)


class WantedChannels(Protocol):
    """What cluster/channel_subscriptions.Subscriptions offers the listener."""

    on_change: Callable[[], None]

    @property
    def wanted(self) -> list[str]: ...

    def take_changes(self) -> tuple[list[str], list[str]]: ...

    def forget_changes(self) -> None: ...

    def confirmed(self, channel: str) -> None: ...

    def lost(self) -> None: ...


class ChannelLost(Exception):
    """Redis dropped a subscription this node did not give up (a slot moved)."""


def _chunks(channels: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(channels), CHANNELS_PER_COMMAND):
        yield channels[start:start + CHANNELS_PER_COMMAND]


class ChannelListener:
    def __init__(self, url: str, sharded: bool, timeout_s: float,
                 channels: WantedChannels) -> None:
        self._url = url
        self._sharded = sharded
        self._timeout_s = timeout_s
        self._channels = channels

    async def session(self, subscribed: Callable[[], Awaitable[None]]) -> AsyncIterator[Message]:
        """Subscribe everything wanted, call `subscribed`, then yield what arrives
        until a loss raises."""
        queue: asyncio.Queue[Message | BaseException] = asyncio.Queue(QUEUE_LIMIT)
        reader = _Reader(queue, lambda channel: self._channels.confirmed(channel.decode()))
        links = _ShardLinks(self._url, self._timeout_s, reader) if self._sharded else (
            _SingleLink(self._url, self._timeout_s, reader))
        changed = asyncio.Event()
        self._channels.on_change = changed.set
        self._channels.forget_changes()
        applier: asyncio.Task[None] | None = None
        try:
            await links.subscribe(self._channels.wanted)
            await subscribed()
            applier = asyncio.create_task(self._apply_changes(links, changed, queue))
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._channels.on_change = lambda: None
            self._channels.lost()
            if applier is not None:
                applier.cancel()
                with contextlib.suppress(BaseException):
                    await applier
            await links.close()

    async def _apply_changes(self, links: _Links, changed: asyncio.Event,
                             queue: asyncio.Queue[Message | BaseException]) -> None:
        try:
            while True:
                await changed.wait()
                changed.clear()
                subscribe, unsubscribe = self._channels.take_changes()
                await links.unsubscribe(unsubscribe)
                await links.subscribe(subscribe)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # redis-py raises several unrelated types
            await queue.put(exc)


class _Links(Protocol):
    async def subscribe(self, channels: list[str]) -> None: ...

    async def unsubscribe(self, channels: list[str]) -> None: ...

    async def close(self) -> None: ...


class _Reader:
    """Reads the connections of one session into its queue; tells of each
    subscription Redis confirms."""

    def __init__(self, queue: asyncio.Queue[Message | BaseException],
                 confirmed: Callable[[bytes], None]) -> None:
        self.queue = queue
        self._confirmed = confirmed

    async def read(self, pubsub: Any, let_go: set[bytes] | None = None) -> None:
        """Put each message of one connection on the queue; a loss ends the
        session. `let_go`: sharded channels this node unsubscribed from (any other
        SUNSUBSCRIBE is Redis dropping one)."""
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is not None:
                    await self._handle(message, let_go)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self.queue.put(exc)

    async def _handle(self, message: dict[str, Any], let_go: set[bytes] | None) -> None:
        kind = message["type"]
        channel = message["channel"]
        if kind in ("message", "smessage"):
            await self.queue.put((channel, message["data"]))
        elif kind in ("subscribe", "ssubscribe"):
            self._confirmed(channel)
        elif kind == "sunsubscribe" and let_go is not None:
            if channel not in let_go:
                raise ChannelLost(f"Redis dropped {channel!r} (its slot moved)")
            let_go.discard(channel)


async def _close(pubsub: Any, client: aioredis.Redis) -> None:
    for closing in (pubsub.aclose, client.aclose):
        try:
            await closing()
        except Exception:  # already broken: nothing left to release cleanly
            log.debug("closing a broken Redis connection failed")


class _SingleLink:
    """One Redis: one connection, SUBSCRIBE."""

    def __init__(self, url: str, timeout_s: float, reader: _Reader) -> None:
        self._client = listener_client(url, timeout_s)
        self._pubsub = self._client.pubsub()
        self._input = reader
        self._reader: asyncio.Task[None] | None = None

    async def subscribe(self, channels: list[str]) -> None:
        for chunk in _chunks(channels):
            await self._pubsub.subscribe(*chunk)
        if self._reader is None and channels:
            self._reader = asyncio.create_task(self._input.read(self._pubsub))

    async def unsubscribe(self, channels: list[str]) -> None:
        for chunk in _chunks(channels):
            await self._pubsub.unsubscribe(*chunk)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        await _close(self._pubsub, self._client)


class _ShardLinks:
    """A Redis Cluster: SSUBSCRIBE on the master serving each channel's slot, one
    connection per master, the topology as learnt when the session began."""

    def __init__(self, url: str, timeout_s: float, reader: _Reader) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._input = reader
        self._topology: RedisCluster | None = None
        self._links: dict[str, tuple[aioredis.Redis, Any, asyncio.Task[None], set[bytes]]] = {}
        self._where: dict[str, str] = {}  # channel -> the master's name

    async def _cluster(self) -> RedisCluster:
        if self._topology is None:
            client = redis_client(self._url, self._timeout_s, self._timeout_s)
            assert isinstance(client, RedisCluster)
            self._topology = client
            await client.initialize()
        return self._topology

    async def subscribe(self, channels: list[str]) -> None:
        cluster = await self._cluster()
        for channel in channels:
            node = cluster.get_node_from_key(channel)
            if node is None:
                raise ChannelLost(f"no master serves {channel!r}")
            if node.name not in self._links:
                client = listener_client(f"redis://{node.host}:{node.port}", self._timeout_s,
                                         cluster_url=self._url)
                pubsub = client.pubsub()
                let_go: set[bytes] = set()
                await pubsub.ssubscribe(channel)
                reader = asyncio.create_task(self._input.read(pubsub, let_go))
                self._links[node.name] = (client, pubsub, reader, let_go)
            else:
                await self._links[node.name][1].ssubscribe(channel)
            self._where[channel] = node.name

    async def unsubscribe(self, channels: list[str]) -> None:
        for channel in channels:
            name = self._where.pop(channel, None)
            if name is not None:
                _, pubsub, _, let_go = self._links[name]
                let_go.add(channel.encode())
                await pubsub.sunsubscribe(channel)

    async def close(self) -> None:
        for client, pubsub, reader, _ in self._links.values():
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            await _close(pubsub, client)
        self._links.clear()
        if self._topology is not None:
            with contextlib.suppress(Exception):
                await self._topology.aclose()
