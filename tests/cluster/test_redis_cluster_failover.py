"""A Redis Cluster master dies (SIGKILL) while messages cross between two nodes:
its replica is promoted, both nodes find it by themselves, close their clients'
transports so they resync, and a client that rejoins with `since` gets what it
missed while the master was gone.

The master killed is, in one run, the one serving the nodes' hash tag (their
keys and the node-wide channel), and in the other the one serving the
conversation's own channel (sharded pub/sub puts each room's channel on the
master of its slot: see cluster/channel_listener.py), another master than the
first: either loss makes every node resubscribe and resync its clients."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

import pytest

from tests.cluster.conftest import (
    CLUSTER_NODE_TIMEOUT_MS,
    Cluster,
    RedisClusterServers,
    cluster_on,
)
from tests.cluster.test_cluster import (
    highest_id,
    joined,
    send,
    texts,
    with_text,
)
from tests.support import ChatClient, record_disconnects, transport_closed

SEND_EVERY_S = 0.05
TRAFFIC_BEFORE_KILL_S = 0.5  # messages are crossing when the master dies
# The replica is promoted a node timeout and an election after the kill; a
# listener then retries at most every 2 s with jitter up to 1.5 times that.
RECOVERY_LIMIT_S = CLUSTER_NODE_TIMEOUT_MS / 1000 * 3 + 2.0 * 1.5 + 2.0
# Clients reconnecting after the resync come back within the grace: no presence churn.
GRACE_MS = 10_000
CONVERSATIONS_TRIED = 20


async def keep_sending(client: ChatClient, conversation: int, acked: list[str]) -> None:
    """Send until the socket is closed (its node resyncs it); keep what was acked."""
    with contextlib.suppress(Exception):  # the close interrupts a call in flight
        while client.sio.connected:
            text = f"t-{uuid.uuid4().hex[:8]}"
            ack = await client.call("message:send", {"conversationId": conversation,
                                                     "text": text, "messageId": text})
            if ack.get("ok") and ack.get("status") == "sent":
                acked.append(text)
            await asyncio.sleep(SEND_EVERY_S)


async def conversation_on_another_master(cluster: Cluster,
                                         redis_cluster: RedisClusterServers) -> int:
    """A conversation of users 1 and 2 whose channel another master serves than
    the hash tag's (two in three are: the ids are the database's, the first one
    that is will do)."""
    keys_master = redis_cluster.master_of(cluster.key_base)
    for _ in range(CONVERSATIONS_TRIED):
        conversation = await cluster.conversation(1, 2)
        channel = cluster.room_channel(f"conversation:{conversation}")
        if redis_cluster.master_of(channel) is not keys_master:
            return conversation
    pytest.fail(f"{CONVERSATIONS_TRIED} conversations, all on the hash tag's master")


@pytest.mark.parametrize("killed", ["keys", "room"])
async def test_a_killed_master_fails_over_and_nodes_resync_and_cross_again(
    tmp_path: Path, redis_cluster: RedisClusterServers, killed: str
) -> None:
    async with cluster_on(tmp_path, redis_cluster.url,
                          PRESENCE_GRACE_MS=str(GRACE_MS)) as cluster:
        a, b = cluster.start("A", "B")
        conversation = await conversation_on_another_master(cluster, redis_cluster)
        served = cluster.key_base if killed == "keys" else cluster.room_channel(
            f"conversation:{conversation}")
        alice = await joined(cluster, a, 1, conversation)
        bob = await joined(cluster, b, 2, conversation)
        closes = {"alice": record_disconnects(alice), "bob": record_disconnects(bob)}
        await send(alice, conversation, "before")
        await bob.wait_for("message:new", with_text("before"))

        master = redis_cluster.master_of(served)
        acked: list[str] = []
        traffic = asyncio.create_task(keep_sending(alice, conversation, acked))
        await asyncio.sleep(TRAFFIC_BEFORE_KILL_S)
        killed_at = time.monotonic()
        master.stop()
        try:
            for node in (a, b):
                await node.wait_healthy_async(RECOVERY_LIMIT_S)
            healthy_s = time.monotonic() - killed_at
            for client in (alice, bob):
                await client.wait_disconnected(RECOVERY_LIMIT_S)
            resynced_s = time.monotonic() - killed_at
            await traffic
            assert redis_cluster.master_of(served) is not master

            bob_before = texts(bob)
            since = highest_id(bob)
            bob_again = await cluster.client(b, 2)
            reply = await bob_again.call("conversation:join",
                                         {"conversationId": conversation, "since": since})
            assert reply["ok"], reply
            replayed = texts(bob_again)
            alice_again = await joined(cluster, a, 1, conversation)
            await send(alice_again, conversation, "after")
            await bob_again.wait_for("message:new", with_text("after"))
        finally:
            master.start()  # back as a replica of the promoted one, for later tests
            await asyncio.to_thread(redis_cluster.wait_ok)

    missed = [text for text in acked if text not in bob_before]
    print(f"\nafter SIGKILL of the {killed} master: nodes healthy in {healthy_s:.1f} s, clients "
          f"closed for resync in {resynced_s:.1f} s; {len(acked)} sent meanwhile, "
          f"{len(missed)} missed by bob and replayed")
    assert missed, "no message was sent while the master was gone: the test proved nothing"
    assert set(acked) <= set(bob_before) | set(replayed)
    assert [text for text in replayed if text in bob_before] == []
    for name, seen in closes.items():
        assert len(seen) == 1 and transport_closed(seen[0]), (name, seen)
