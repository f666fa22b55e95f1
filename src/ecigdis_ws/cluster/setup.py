"""One node, or one of several sharing Redis: chosen by REDIS_URL / REDIS_HOST."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from ecigdis_ws.cluster.presence import (
    LocalPresenceRegistry,
    PresenceRegistry,
    RedisPresenceRegistry,
)
from ecigdis_ws.cluster.typing import LocalTypingStore, RedisTypingStore, TypingStore
from ecigdis_ws.fanout.redis import ClusterRedisManager, redis_client
from ecigdis_ws.settings import Settings

RedisStatus = Literal["disabled", "connected", "disconnected"]


def fanout_manager(settings: Settings) -> ClusterRedisManager | None:
    """python-socketio's client manager for several nodes; None for a single node."""
    url = settings.effective_redis_url
    if url is None:
        return None
    return ClusterRedisManager(
        url,
        channel=f"{settings.redis_key_prefix}:fanout",
        key=settings.effective_cluster_secret,
        timeout_s=settings.redis_timeout_ms / 1000,
    )


@dataclass
class ClusterState:
    presence: PresenceRegistry
    typing: TypingStore
    manager: ClusterRedisManager | None = None
    client: aioredis.Redis | None = None

    @classmethod
    def open(cls, settings: Settings, manager: ClusterRedisManager | None) -> ClusterState:
        url = settings.effective_redis_url
        if url is None or manager is None:
            return cls(LocalPresenceRegistry(), LocalTypingStore())
        timeout_s = settings.redis_timeout_ms / 1000
        client = redis_client(url, timeout_s, timeout_s)
        prefix = settings.redis_key_prefix
        presence = RedisPresenceRegistry(
            client, prefix, settings.effective_server_id, settings.presence_ttl_ms
        )
        return cls(presence, RedisTypingStore(client, prefix), manager, client)

    async def redis_status(self) -> RedisStatus:
        if self.manager is None:
            return "disabled"
        return "connected" if await self.manager.ping() else "disconnected"

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
