"""Connections to Redis, for every part of a node that uses it (presence, typing,
the fan-out manager): one URL syntax, one set of timeouts.

Three engines: one Redis (redis://, rediss://, unix://), a Sentinel-managed one
(redis+sentinel://) and a Redis Cluster (redis+cluster://, rediss+cluster://).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlparse

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from socketio.redis_manager import parse_redis_sentinel_url

from ecigdis_ws.settings import (
    CLUSTER_SCHEMES,
    ClusterAddress,
    is_cluster_url,
    parse_cluster_url,
)

# A PING on an idle connection without a socket timeout (the fan-out listener's)
# this often notices a dead Redis.
LISTENER_HEALTH_CHECK_S = 5

# Connections to one Redis per client at most: commands in flight at once, which a
# node under load (presence, typing, the fan-out's publish pipeline) keeps far below.
POOL_CONNECTIONS = 100
# Pipelines one client runs at once (the fan-out's publishes and typing's batch).
PIPELINES_AT_ONCE = 4

# Anything that runs this server's Redis commands: one Redis or a cluster's client.
RedisClient = aioredis.Redis | RedisCluster


def key_base(prefix: str, url: str) -> str:
    """What every key and the fan-out channel of this server start with.

    On a Redis Cluster the prefix is a hash tag ({prefix}), so every key and the
    node-wide channel live in one slot: the presence scripts touch several keys at
    once (a cluster refuses keys of different slots in one script or MULTI). The
    room channels leave the tag out, to spread over the masters
    (fanout/channels.ChannelNames).
    One Redis keeps the plain prefix: nodes of the previous version, which
    write plain names, run beside new ones during a rolling upgrade.
    """
    return f"{{{prefix}}}" if is_cluster_url(url) else prefix


def _options(timeout_s: float | None, connect_timeout_s: float) -> dict[str, Any]:
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": connect_timeout_s,
        "socket_keepalive": True,
    }
    if timeout_s is None:  # a pub/sub listener's (see listener_client)
        options["health_check_interval"] = LISTENER_HEALTH_CHECK_S
        options["retry"] = Retry(NoBackoff(), 0)
    return options


class WaitingRedisCluster(RedisCluster):
    """A cluster client whose commands wait for a free connection, as the blocking
    pool of one Redis does: redis-py's refuses a command past `max_connections`
    to a node (MaxConnectionsError), which a node's connect storm reached on
    every authentication. Commands in flight are held under the pool's size,
    less what the pipelines (cluster/command_batches.py, one each) may take."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight = asyncio.Semaphore(POOL_CONNECTIONS - PIPELINES_AT_ONCE)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._in_flight:
            return await super().execute_command(*args, **kwargs)


def _login(address: ClusterAddress) -> dict[str, Any]:
    """How every connection to a cluster's nodes logs in: the same for the
    cluster client and for the listener's own connection to each master."""
    return {"username": address.username, "password": address.password,
            "ssl": address.tls, **address.tls_files}


def redis_client(url: str, timeout_s: float | None, connect_timeout_s: float) -> RedisClient:
    """A client for any REDIS_URL form (see the module docstring)."""
    options = _options(timeout_s, connect_timeout_s)
    scheme = urlparse(url).scheme
    if scheme in CLUSTER_SCHEMES:
        address = parse_cluster_url(url)
        return WaitingRedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
            max_connections=POOL_CONNECTIONS, **_login(address), **options,
        )
    if scheme == "redis+sentinel":
        sentinels, service_name, connection_kwargs = parse_redis_sentinel_url(url)
        sentinel = aioredis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            sentinels, **{**options, **connection_kwargs}
        )
        master: aioredis.Redis = sentinel.master_for(service_name or "mymaster")
        return master
    # Blocking: past POOL_CONNECTIONS a command waits (within the connect timeout)
    # for a connection to come back, where redis-py's default pool refuses it.
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_CONNECTIONS, timeout=connect_timeout_s, **options
    )
    client: aioredis.Redis = aioredis.Redis.from_pool(pool)  # closes the pool with it
    return client


async def master_of(cluster: RedisCluster, key: str) -> ClusterNode:
    """The master serving `key`'s slot, as the client last learnt the topology
    (it learns again after a command to a node failed)."""
    await cluster.initialize()  # a no-op while the topology is known
    node = cluster.get_node_from_key(key)
    if node is None:  # only asked for a replica; kept for the type checker
        raise aioredis.ConnectionError(f"no Redis Cluster node serves {key}")
    return node


def listener_client(url: str, connect_timeout_s: float, cluster_url: str | None = None
                    ) -> aioredis.Redis:
    """A connection for pub/sub: no socket timeout (redis-py's would fire on an idle
    subscription), a health check instead, and no retry, so that a lost connection
    ends the listener's session (which resubscribes and makes clients resync)
    rather than being reconnected and resubscribed unseen, with the messages
    published meanwhile gone. `cluster_url`: `url` is one node of that cluster,
    reached with its credentials and TLS."""
    if cluster_url is None:
        client = redis_client(url, None, connect_timeout_s)
        assert isinstance(client, aioredis.Redis)
        return client
    address = parse_cluster_url(cluster_url)
    node = urlparse(url)
    assert node.hostname is not None and node.port is not None
    return aioredis.Redis(
        host=node.hostname, port=node.port, **_login(address),
        **_options(None, connect_timeout_s),
    )
