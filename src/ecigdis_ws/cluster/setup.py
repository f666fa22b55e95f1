"""One node, or one of several sharing Redis: chosen by REDIS_URL / REDIS_HOST."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from ecigdis_ws.cluster.presence import (
    LocalPresenceRegistry,
    PresenceRegistry,
    RedisPresenceRegistry,
)
from ecigdis_ws.cluster.redis_connection import RedisClient, key_base, redis_client
from ecigdis_ws.cluster.typing_state import LocalTypingStore, RedisTypingStore, TypingStore
from ecigdis_ws.settings import Settings

RedisStatus = Literal["disabled", "connected", "disconnected"]


@dataclass
class ClusterState:
    presence: PresenceRegistry
    typing: TypingStore
    client: RedisClient | None = None  # None: a single node, no Redis
    # When Redis is configured: the fan-out's own check (its listener subscribed,
    # Redis answering), which /health reports.
    fanout_healthy: Callable[[], Awaitable[bool]] | None = None

    @classmethod
    def open(
        cls, settings: Settings, fanout_healthy: Callable[[], Awaitable[bool]] | None = None
    ) -> ClusterState:
        url = settings.effective_redis_url
        if url is None:
            return cls(LocalPresenceRegistry(), LocalTypingStore())
        timeout_s = settings.redis_timeout_ms / 1000
        client = redis_client(url, timeout_s, timeout_s)
        prefix = key_base(settings.redis_key_prefix, url)
        presence = RedisPresenceRegistry(
            client, prefix, settings.effective_server_id, settings.presence_ttl_ms
        )
        return cls(presence, RedisTypingStore(client, prefix), client, fanout_healthy)

    async def redis_status(self) -> RedisStatus:
        if self.fanout_healthy is None:
            return "disabled"
        return "connected" if await self.fanout_healthy() else "disconnected"

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
