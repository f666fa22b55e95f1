"""Per-room fan-out channels (FANOUT_CHANNELS=per-room, the default) between real
nodes, on one Redis and on a Redis Cluster (sharded pub/sub): a node reads the
channel of a conversation only while it has a socket in its room, lets it go a
while after the last one left, and reads nothing of other conversations.
FANOUT_CHANNELS=single keeps the previous version's one channel."""

from __future__ import annotations

import asyncio
import time

import redis

from tests.cluster.conftest import POLL_S, Cluster, Node, sync_redis
from tests.cluster.test_cluster import barrier, joined, send, with_text

RECEIVED = "ecigdis_ws_fanout_received_total"
LINGER_MS = 400
WAIT_S = 5.0
BURST = 20
JOINS = 10


def received(node: Node, kind: str) -> float:
    """Fan-out messages the node read from Redis on channels of this kind."""
    figures = node.metrics_json().get(RECEIVED, {})
    return float(figures.get(f"channel={kind}", 0.0))


def subscribers(cluster: Cluster, channel: str) -> int:
    """How many connections Redis has subscribed to the channel (on a cluster:
    sharded subscriptions, on the master serving it)."""
    client = sync_redis(cluster.keys_url)
    try:
        if isinstance(client, redis.RedisCluster):
            master = client.get_node_from_key(channel)
            [(_, count)] = client.pubsub_shardnumsub(channel, target_nodes=master)
        else:
            [(_, count)] = client.pubsub_numsub(channel)
        return int(count)
    finally:
        client.close()


async def subscribers_become(cluster: Cluster, channel: str, count: int) -> float:
    """Wait until the channel has `count` subscribers; return how long it took."""
    started = time.monotonic()
    while (now := await asyncio.to_thread(subscribers, cluster, channel)) != count:
        assert time.monotonic() - started < WAIT_S, f"{channel}: {now} subscribers"
        await asyncio.sleep(POLL_S)
    return time.monotonic() - started


async def test_a_node_reads_nothing_of_a_conversation_it_has_no_socket_in(
    cluster: Cluster,
) -> None:
    a, b = cluster.start("A", "B")
    busy = await cluster.conversation(1, 2)
    other = await cluster.conversation(3, 4)
    alice_a = await joined(cluster, a, 1, busy)
    bob_a = await joined(cluster, a, 2, busy)
    carol_b = await joined(cluster, b, 3, other)
    dave_a = await joined(cluster, a, 4, other)
    # Read by B, after all A published before it: B has counted everything so far
    # (sent from A, so that no echo of B's own is still on its way back to B).
    await barrier(dave_a, other, carol_b)
    room_channel = cluster.room_channel(f"conversation:{busy}")
    assert await asyncio.to_thread(subscribers, cluster, room_channel) == 1
    before = await asyncio.to_thread(received, b, "conversation")

    for n in range(BURST):
        await send(alice_a, busy, f"busy {n}")
    await bob_a.wait_for("message:new", with_text(f"busy {BURST - 1}"))
    await barrier(dave_a, other, carol_b)  # anything B was sent has arrived

    # B read the barrier of its own conversation, and nothing of the busy one.
    assert await asyncio.to_thread(received, b, "conversation") == before + 1


async def test_a_message_sent_right_after_another_nodes_join_reply_reaches_it(
    cluster: Cluster,
) -> None:
    """A join is answered once the node's subscription to the room's channel is
    confirmed by Redis: a message sent at once from another node is not lost."""
    a, b = cluster.start("A", "B")
    alice_a = await cluster.client(a, 1)
    bob_b = await cluster.client(b, 2)
    for n in range(JOINS):
        conversation = await cluster.conversation(1, 2)
        assert (await alice_a.call("conversation:join", {"conversationId": conversation}))["ok"]
        assert (await bob_b.call("conversation:join", {"conversationId": conversation}))["ok"]
        await send(alice_a, conversation, f"at once {n}")
        await bob_b.wait_for("message:new", with_text(f"at once {n}"))


async def test_a_rooms_channel_is_let_go_a_while_after_the_last_socket_left(
    cluster: Cluster,
) -> None:
    a, b = cluster.start("A", "B", FANOUT_UNSUBSCRIBE_DELAY_MS=str(LINGER_MS))
    conversation = await cluster.conversation(1, 2)
    alice_a = await joined(cluster, a, 1, conversation)
    bob_b = await joined(cluster, b, 2, conversation)
    channel = cluster.room_channel(f"conversation:{conversation}")
    await subscribers_become(cluster, channel, 2)

    assert (await bob_b.call("conversation:leave", {"conversationId": conversation}))["ok"]
    waited = await subscribers_become(cluster, channel, 1)
    assert waited >= LINGER_MS / 1000 * 0.8, f"let go after {waited:.2f} s"

    # Back in the room: B subscribes again, and hears the conversation again.
    assert (await bob_b.call("conversation:join", {"conversationId": conversation}))["ok"]
    await subscribers_become(cluster, channel, 2)
    await barrier(alice_a, conversation, bob_b)


async def test_with_fanout_channels_single_every_node_reads_every_message(
    cluster: Cluster,
) -> None:
    a, b = cluster.start("A", "B", FANOUT_CHANNELS="single")
    conversation = await cluster.conversation(1, 2)
    other = await cluster.conversation(3, 4)
    alice_a = await joined(cluster, a, 1, conversation)
    bob_b = await joined(cluster, b, 2, conversation)
    carol_a = await joined(cluster, a, 3, other)
    await barrier(alice_a, conversation, bob_b)
    before = await asyncio.to_thread(received, b, "everyone")

    await send(carol_a, other, "only A's clients are in this one")
    await barrier(alice_a, conversation, bob_b)

    assert await asyncio.to_thread(received, b, "everyone") >= before + 2
    assert await asyncio.to_thread(received, b, "conversation") == 0
