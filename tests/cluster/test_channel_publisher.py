"""The fan-out's publisher against a real Redis: a burst published in one loop
turn (it goes out in pipelines) arrives whole and in order, and a Redis that is
gone costs a warning and a count, never an exception in the send that published."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from ecigdis_ws.cluster.channel_publisher import ChannelPublisher
from ecigdis_ws.cluster.redis_connection import redis_client
from tests.support import free_port

BURST = 500
TIMEOUT_S = 1.0


async def test_a_burst_arrives_whole_and_in_order(shared_redis_url: str) -> None:
    channel = f"test-publisher-{uuid.uuid4().hex}"
    client = redis_client(shared_redis_url, TIMEOUT_S, TIMEOUT_S)
    listener = aioredis.Redis.from_url(shared_redis_url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(channel)
    confirmed = await pubsub.get_message(timeout=TIMEOUT_S)  # subscribed before publishing
    assert confirmed is not None and confirmed["type"] == "subscribe", confirmed
    try:
        publisher = ChannelPublisher(lambda: client, sharded=False)
        for n in range(BURST):  # one loop turn: the first goes alone, the rest together
            publisher.publish([(channel, str(n))])
        await publisher.flush()
        heard = []
        while len(heard) < BURST:
            message = await pubsub.get_message(timeout=TIMEOUT_S)
            assert message is not None, f"{len(heard)} of {BURST} arrived"
            heard.append(int(message["data"]))
    finally:
        await pubsub.aclose()
        await listener.aclose()
        await client.aclose()
    assert heard == list(range(BURST))
    assert publisher.failed == 0


async def test_a_redis_that_is_gone_costs_a_count_not_an_exception() -> None:
    client = redis_client(f"redis://127.0.0.1:{free_port()}/0", TIMEOUT_S, TIMEOUT_S)
    publisher = ChannelPublisher(lambda: client, sharded=False)
    failures: list[int] = []
    publisher.on_failure = lambda: failures.append(1)
    try:
        publisher.publish([("c", "1")])
        publisher.publish([("c", "2"), ("c", "3")])
        await publisher.flush()
    finally:
        await client.aclose()
    assert publisher.failed == 3
    assert failures
