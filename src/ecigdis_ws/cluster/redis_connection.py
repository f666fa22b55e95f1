"""Connections to Redis, for every part of a node that uses it (presence, typing,
the fan-out manager): one URL syntax, one set of timeouts."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import redis.asyncio as aioredis
from socketio.redis_manager import parse_redis_sentinel_url

# A PING on an idle connection without a socket timeout (the fan-out listener's)
# this often notices a dead Redis.
LISTENER_HEALTH_CHECK_S = 5


def redis_client(url: str, timeout_s: float | None, connect_timeout_s: float) -> aioredis.Redis:
    """A client for a redis://, rediss:// or redis+sentinel:// URL."""
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": connect_timeout_s,
        "socket_keepalive": True,
    }
    if timeout_s is None:
        options["health_check_interval"] = LISTENER_HEALTH_CHECK_S
    if urlparse(url).scheme == "redis+sentinel":
        sentinels, service_name, connection_kwargs = parse_redis_sentinel_url(url)
        sentinel = aioredis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            sentinels, **{**options, **connection_kwargs}
        )
        master: aioredis.Redis = sentinel.master_for(service_name or "mymaster")
        return master
    client: aioredis.Redis = aioredis.Redis.from_url(url, **options)
    return client
