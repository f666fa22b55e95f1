"""Redis commands sent by many sends at once, pipelined: whatever was submitted while
the previous pipeline was out goes as the next one, in order, on one connection.

A command per message, each on a connection of its own and each awaited on its
own, is what a loaded node did before (the fan-out's PUBLISH and the typing
indicator's ZREM of every send): the event loop falls behind, hundreds of
commands wait for their replies at once, the connection pool runs dry and the
next command fails (the bench lost messages that way). Here one task drains a
queue: one write and one read per batch, however many commands are in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis.asyncio.cluster import RedisCluster

from ecigdis_ws.cluster.redis_connection import RedisClient

# Commands waiting for Redis at most; past this Redis is not keeping up (or is gone
# and each pipeline waits out REDIS_TIMEOUT_MS) and new ones fail at once.
PENDING_LIMIT = 50_000

Command = tuple[Any, ...]
# Told (commands, reason) when commands submitted without a future fail.
FailureListener = Callable[[int, str], None]


class CommandBatches:
    def __init__(self, client: Callable[[], RedisClient],
                 on_failure: FailureListener = lambda count, reason: None) -> None:
        self._client = client
        self._on_failure = on_failure
        self._pending: list[tuple[Command, asyncio.Future[Any] | None]] = []
        self._drainer: asyncio.Task[None] | None = None

    def submit(self, *command: Any) -> asyncio.Future[Any]:
        """Queue one command; the future gets its reply (or its error)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._full():
            future.set_exception(ConnectionError("too many Redis commands waiting"))
        else:
            self._queue([(command, future)])
        return future

    def send(self, commands: list[Command]) -> None:
        """Queue commands whose replies nobody waits for (failures go to `on_failure`)."""
        if self._full():
            self._on_failure(len(commands), "too many Redis commands waiting")
        else:
            self._queue([(command, None) for command in commands])

    async def flush(self) -> None:
        """Wait until everything queued so far was sent (or failed)."""
        while self._drainer is not None:
            await asyncio.shield(self._drainer)

    def _full(self) -> bool:
        return len(self._pending) >= PENDING_LIMIT

    def _queue(self, items: list[tuple[Command, asyncio.Future[Any] | None]]) -> None:
        self._pending.extend(items)
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    replies = await self._pipeline([command for command, _ in batch])
                except Exception as exc:  # redis-py raises several unrelated types
                    replies = [exc] * len(batch)
                self._settle(batch, replies)
        finally:
            self._drainer = None

    async def _pipeline(self, commands: list[Command]) -> list[Any]:
        client = self._client()
        # (a cluster's pipeline sends each command to its slot's master)
        pipe = client.pipeline() if isinstance(client, RedisCluster) else client.pipeline(
            transaction=False)
        async with pipe:
            for command in commands:
                pipe.execute_command(*command)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies

    def _settle(self, batch: list[tuple[Command, asyncio.Future[Any] | None]],
                replies: list[Any]) -> None:
        unheard: list[str] = []
        for (_, future), reply in zip(batch, replies, strict=True):
            failed = isinstance(reply, Exception)
            if future is None:
                if failed:
                    unheard.append(str(reply) or type(reply).__name__)
            elif not future.done():  # (a caller that gave up cancelled it)
                if failed:
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        if unheard:
            self._on_failure(len(unheard), unheard[0])
