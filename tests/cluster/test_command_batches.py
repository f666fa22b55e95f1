"""Pipelined Redis commands against a real Redis: a burst published in one loop
turn arrives whole and in order, each awaited command gets its own reply, and a
Redis that is gone costs the fire-and-forget commands a count, the awaited ones
their error, never an exception elsewhere."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from ecigdis_ws.cluster.command_batches import CommandBatches
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
        failures: list[int] = []
        batches = CommandBatches(lambda: client, lambda count, reason: failures.append(count))
        for n in range(BURST):  # one loop turn: the first goes alone, the rest together
            batches.send([("PUBLISH", channel, str(n))])
        await batches.flush()
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
    assert failures == []


async def test_each_awaited_command_gets_its_own_reply(shared_redis_url: str) -> None:
    key = f"test-batches-{uuid.uuid4().hex}"
    client = redis_client(shared_redis_url, TIMEOUT_S, TIMEOUT_S)
    try:
        batches = CommandBatches(lambda: client)
        await client.zadd(key, {"a": 1, "b": 2, "kept": 3})
        replies = await asyncio.gather(
            batches.submit("ZREM", key, "a"), batches.submit("ZREM", key, "a"),
            batches.submit("ZREM", key, "b"), batches.submit("ZREM", key, "c"),
        )
        wrong = batches.submit("INCR", key)  # a sorted set is no counter
        with pytest.raises(redis.exceptions.ResponseError):
            await wrong
    finally:
        await client.delete(key)
        await client.aclose()
    assert replies == [1, 0, 1, 0]


async def test_a_redis_that_is_gone_costs_a_count_not_an_exception() -> None:
    client = redis_client(f"redis://127.0.0.1:{free_port()}/0", TIMEOUT_S, TIMEOUT_S)
    failures: list[int] = []
    batches = CommandBatches(lambda: client, lambda count, reason: failures.append(count))
    try:
        batches.send([("PUBLISH", "c", "1")])
        batches.send([("PUBLISH", "c", "2"), ("PUBLISH", "c", "3")])
        awaited = batches.submit("PUBLISH", "c", "4")
        await batches.flush()
        with pytest.raises(redis.exceptions.ConnectionError):
            await awaited
    finally:
        await client.aclose()
    assert sum(failures) == 3
