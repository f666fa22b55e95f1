"""Who is typing where, with the moment each indicator ends: in memory on one
node, in a Redis sorted set across nodes, so that an indicator whose node died
is still ended, exactly once, by whichever node claims it first."""

from __future__ import annotations

from typing import Protocol

from ecigdis_ws.cluster.command_batches import CommandBatches
from ecigdis_ws.cluster.redis_connection import RedisClient


class TypingStore(Protocol):
    shared: bool  # True when other nodes can end this node's indicators

    async def start(self, key: str, ends_ms: int) -> bool:
        """Record or extend; True when the key was not typing before."""

    async def stop(self, key: str) -> bool:
        """Remove; True when it was there (so the caller announces the end)."""

    async def claim_ended(self, before_ms: int) -> list[str]:
        """Remove and return every key whose end is before `before_ms`."""


class LocalTypingStore:
    shared = False

    def __init__(self) -> None:
        self._ends: dict[str, int] = {}

    async def start(self, key: str, ends_ms: int) -> bool:
        new = key not in self._ends
        self._ends[key] = ends_ms
        return new

    async def stop(self, key: str) -> bool:
        return self._ends.pop(key, None) is not None

    async def claim_ended(self, before_ms: int) -> list[str]:
        ended = [key for key, ends in self._ends.items() if ends < before_ms]
        for key in ended:
            del self._ends[key]
        return ended


_CLAIM = """
local ended = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
for _, key in ipairs(ended) do redis.call('ZREM', KEYS[1], key) end
return ended
"""


class RedisTypingStore:
    shared = True

    def __init__(self, client: RedisClient, key_prefix: str) -> None:
        self._key = f"{key_prefix}:typing"
        self._claim = client.register_script(_CLAIM)
        # Every send ends its sender's indicator: under load, one pipeline of
        # ZREMs per batch, not a connection and a round trip each.
        self._batches = CommandBatches(lambda: client)

    async def start(self, key: str, ends_ms: int) -> bool:
        added = await self._batches.submit("ZADD", self._key, ends_ms, key)
        return int(added or 0) == 1

    async def stop(self, key: str) -> bool:
        removed = await self._batches.submit("ZREM", self._key, key)
        return int(removed or 0) == 1

    async def claim_ended(self, before_ms: int) -> list[str]:
        ended = await self._claim(keys=[self._key], args=[before_ms])
        return [k.decode() if isinstance(k, bytes) else k for k in ended]
