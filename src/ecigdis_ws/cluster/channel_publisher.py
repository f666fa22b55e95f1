"""Publishing fan-out messages: whatever the sends of one event-loop turn published
goes to Redis as one pipeline, behind the previous one.

One round trip per message, each on a connection of its own, was what a loaded
node did before: under load the event loop falls behind, hundreds of publishes
wait for their replies at once, and redis-py's pool (100 connections) refuses
the next one, which the other nodes then never get. A queue drained by one task
sends what accumulated while the previous pipeline was out, in order, on one
connection: one write and one reply to read per batch, however many messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis.asyncio.cluster import RedisCluster

from ecigdis_ws.cluster.redis_connection import RedisClient
from ecigdis_ws.observability.log_setup import get_logger

log = get_logger(__name__)

# Messages waiting for Redis at most; past this Redis is not keeping up (or is
# gone and each pipeline waits out REDIS_TIMEOUT_MS) and new ones are dropped:
# the other nodes' clients catch up with `since`, as after an outage.
PENDING_LIMIT = 50_000

Item = tuple[str, str]  # (channel, signed message)


class ChannelPublisher:
    def __init__(self, client: Callable[[], RedisClient], sharded: bool) -> None:
        self._client = client
        self._sharded = sharded
        self._pending: list[Item] = []
        self._drainer: asyncio.Task[None] | None = None
        self.failed = 0  # messages that did not reach Redis
        self.on_failure: Callable[[], None] = lambda: None

    def publish(self, items: list[Item]) -> None:
        """Queue the messages; they go out in order, after what is queued already."""
        if len(self._pending) >= PENDING_LIMIT:
            self._failed(len(items), "too many fan-out messages waiting for Redis")
            return
        self._pending.extend(items)
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def flush(self) -> None:
        """Wait until everything queued so far was sent (or failed)."""
        while self._drainer is not None:
            await asyncio.shield(self._drainer)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await publish_each(self._client(), self._sharded, batch)
                except Exception as exc:  # redis-py raises several unrelated types
                    self._failed(len(batch), str(exc) or type(exc).__name__)
        finally:
            self._drainer = None

    def _failed(self, count: int, reason: str) -> None:
        self.failed += count
        self.on_failure()
        log.warning("fan-out to other nodes failed", reason=reason, messages=count)


async def publish_each(client: RedisClient, sharded: bool, items: list[Item]) -> None:
    """PUBLISH (SPUBLISH on a cluster) each (channel, message) in one pipeline: one
    round trip on one Redis; on a cluster, one to each master concerned."""
    if len(items) == 1:
        channel, data = items[0]
        await (client.spublish(channel, data) if sharded else client.publish(channel, data))
        return
    if sharded:
        assert isinstance(client, RedisCluster)
        async with client.pipeline() as pipe:
            for channel, data in items:
                pipe.spublish(channel, data)
            await pipe.execute()
        return
    async with client.pipeline(transaction=False) as pipe:
        for channel, data in items:
            pipe.publish(channel, data)
        await pipe.execute()
