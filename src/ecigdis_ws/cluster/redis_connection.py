"""Connections to Redis, for every part of a node that uses it (presence, typing,
the fan-out manager): one URL syntax, one set of timeouts.

Three engines: one Redis (redis://, rediss://, unix://), a Sentinel-managed one
(redis+sentinel://) and a Redis Cluster (redis+cluster://, rediss+cluster://).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from socketio.redis_manager import parse_redis_sentinel_url

from ecigdis_ws.settings import CLUSTER_SCHEMES, is_cluster_url, parse_cluster_url

# A PING on an idle connection without a socket timeout (the fan-out listener's)
# this often notices a dead Redis.
LISTENER_HEALTH_CHECK_S = 5

# Anything that runs this server's Redis commands: one Redis or a cluster's client.
RedisClient = aioredis.Redis | RedisCluster


def key_base(prefix: str, url: str) -> str:
    """What every key and the fan-out channel of this server start with.

    On a Redis Cluster the prefix is a hash tag ({prefix}), so every key and the
    channel live in one slot: the presence scripts touch several keys at once
    (a cluster refuses keys of different slots in one script or MULTI), and a
    node's fan-out fails over together with the keys (see DEPLOYMENT_GUIDE.md).
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
    if timeout_s is None:
        options["health_check_interval"] = LISTENER_HEALTH_CHECK_S
    return options


def redis_client(url: str, timeout_s: float | None, connect_timeout_s: float) -> RedisClient:
    """A client for any REDIS_URL form (see the module docstring)."""
    options = _options(timeout_s, connect_timeout_s)
    scheme = urlparse(url).scheme
    if scheme in CLUSTER_SCHEMES:
        address = parse_cluster_url(url)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
            username=address.username, password=address.password, ssl=address.tls,
            **options,
        )
    if scheme == "redis+sentinel":
        sentinels, service_name, connection_kwargs = parse_redis_sentinel_url(url)
        sentinel = aioredis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            sentinels, **{**options, **connection_kwargs}
        )
        master: aioredis.Redis = sentinel.master_for(service_name or "mymaster")
        return master
    client: aioredis.Redis = aioredis.Redis.from_url(url, **options)
    return client


async def master_of(cluster: RedisCluster, key: str) -> ClusterNode:
    """The master serving `key`'s slot, as the client last learnt the topology
    (it learns again after a command to a node failed)."""
    await cluster.initialize()  # a no-op while the topology is known
    node = cluster.get_node_from_key(key)
    if node is None:  # only asked for a replica; kept for the type checker
        raise aioredis.ConnectionError(f"no Redis Cluster node serves {key}")
    return node


async def cluster_node_client(url: str, key: str, connect_timeout_s: float) -> aioredis.Redis:
    """A plain connection, for pub/sub, to the master now serving `key`'s slot.

    The topology is discovered afresh each time, so after a failover this finds
    the promoted replica. SUBSCRIBE on any node of a cluster hears every PUBLISH;
    this one is chosen because it is where the keys and the publishers are.
    """
    address = parse_cluster_url(url)
    cluster = redis_client(url, connect_timeout_s, connect_timeout_s)
    assert isinstance(cluster, RedisCluster)
    try:
        node = await master_of(cluster, key)
    finally:
        await cluster.aclose()
    client: aioredis.Redis = aioredis.Redis(
        host=node.host, port=int(node.port), username=address.username,
        password=address.password, ssl=address.tls, **_options(None, connect_timeout_s),
    )
    return client
