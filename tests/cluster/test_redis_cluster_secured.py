"""Real nodes on a Redis Cluster that asks for a password, and on one that speaks
only TLS: the cluster client (keys) and the listener's own connection to each
master (sharded pub/sub) both log in and verify the certificate, and a node that
cannot log in says so in /health and in one-line warnings, never a traceback.

Each cluster here is this module's own (the session's has neither a password nor
TLS), of three masters and one replica each, as the session's: redis-cli, the
replicas' sync and the failover configuration are then the ones the guide shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certificates import self_signed
from tests.cluster.conftest import (
    Cluster,
    Node,
    RedisClusterServers,
    RedisSecurity,
    cluster_on,
    wait_until,
)
from tests.cluster.test_cluster import joined, send, with_text

# Characters a URL must quote (':' and '@' would cut the user info short).
PASSWORD = "pa:ss@word/with%chars"
# A refused node is watched over this many of the listener's retries (0.2 s
# doubling, randomised) and presence heartbeats (each PRESENCE_TTL_MS / 3 = 1 s):
# each a chance to log a traceback. They take about 3 s; the bound is generous.
RETRIES = 3
WARNINGS = ("fan-out channel lost; reconnecting", "presence heartbeat failed")
REFUSED_WATCH_S = 10.0


def start(servers: RedisClusterServers) -> Iterator[RedisClusterServers]:
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def password_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    workdir = tmp_path_factory.mktemp("redis-cluster-password")
    yield from start(RedisClusterServers(workdir, RedisSecurity(password=PASSWORD)))


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    workdir = tmp_path_factory.mktemp("redis-cluster-tls")
    cert, key = self_signed(workdir)
    yield from start(RedisClusterServers(workdir, RedisSecurity(PASSWORD, cert, key)))


async def a_message_crosses(cluster: Cluster) -> None:
    """Two healthy nodes; a message sent on A reaches a socket on B (sharded
    pub/sub on the master of the conversation's channel)."""
    a, b = cluster.start("A", "B")
    conversation = await cluster.conversation(1, 2)
    alice = await joined(cluster, a, 1, conversation)
    bob = await joined(cluster, b, 2, conversation)
    await send(alice, conversation, "across the cluster")
    await bob.wait_for("message:new", with_text("across the cluster"))
    for node in (a, b):
        status, body = await node.health_async()
        assert (status, body["redis"]) == (200, "connected"), body


def refused(node: Node, why: str) -> None:
    """The node keeps running, says Redis is disconnected, and each of its
    warnings (the listener's retries, the presence heartbeats) is one line saying
    `why`, none a traceback: watched over RETRIES of each."""
    def retried() -> bool:
        log = node.log()
        return all(log.count(warning) >= RETRIES for warning in WARNINGS)

    wait_until(retried, REFUSED_WATCH_S)
    assert node.process.poll() is None, node.log()
    status, body = node.health()
    assert (status, body["redis"]) == (503, "disconnected"), body
    log = node.log()
    assert "Traceback" not in log, log
    reasons = [line for line in log.splitlines() if "reason=" in line]
    assert reasons and all(why in line for line in reasons), log


async def test_nodes_log_in_to_a_cluster_with_a_password(
    tmp_path: Path, password_cluster: RedisClusterServers,
) -> None:
    async with cluster_on(tmp_path, password_cluster.url) as cluster:
        await a_message_crosses(cluster)


async def test_a_node_with_a_wrong_password_is_refused_saying_so(
    tmp_path: Path, password_cluster: RedisClusterServers,
) -> None:
    async with cluster_on(tmp_path, password_cluster.url) as cluster:
        wrong = password_cluster.security.cluster_url(password_cluster.addresses, "wrong")
        node = cluster.launch("W", REDIS_URL=wrong)
        await asyncio.to_thread(refused, node, "invalid username-password pair")


async def test_nodes_verify_a_tls_cluster_and_log_in(
    tmp_path: Path, tls_cluster: RedisClusterServers,
) -> None:
    async with cluster_on(tmp_path, tls_cluster.url) as cluster:
        await a_message_crosses(cluster)


async def test_a_node_that_does_not_trust_the_clusters_ca_is_refused(
    tmp_path: Path, tls_cluster: RedisClusterServers,
) -> None:
    # The client certificate is still shown: only the CA is missing, so the node
    # checks the cluster's certificate against the system's CAs, which never signed it.
    untrusting = tls_cluster.security.cluster_url(tls_cluster.addresses, trust=False)
    async with cluster_on(tmp_path, tls_cluster.url) as cluster:
        node = cluster.launch("U", REDIS_URL=untrusting)
        await asyncio.to_thread(refused, node, "certificate verify failed")
