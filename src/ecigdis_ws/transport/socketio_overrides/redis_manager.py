"""Fan-out between nodes over Redis pub/sub: python-socketio's AsyncRedisManager,
with every message signed, a listener that survives Redis going away, and
publishing that never blocks local delivery.

The base class already delivers to this node's sockets first and then publishes
JSON (never pickle) for the other nodes. What this subclass adds:
- HMAC-SHA256 on every published message: a forged or malformed message on the
  channel (anyone who can reach Redis can publish) is logged and dropped, never
  executed as an emit or a disconnect;
- a publishing connection with a socket timeout, and a listening connection
  without one: redis-py's socket timeout on an idle pub/sub connection raises,
  which makes a listener spin or die;
- reconnection with capped exponential backoff, and a `listening` flag for /health;
- a Redis Cluster (redis+cluster://): PUBLISH is sent to, and the listener
  subscribes on, the master serving the channel's slot (the hash tag of every
  key of this server). A cluster forwards a PUBLISH to every node, so any node
  would hear it; this one is chosen so that the fan-out fails with the keys,
  for every node at once: when that master dies, every node's listener is lost
  and, once its replica is promoted, every node resubscribes there and makes
  its clients resync, as after a restart of one Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import socketio
from redis.asyncio.cluster import RedisCluster

from ecigdis_ws.cluster.redis_connection import (
    RedisClient,
    cluster_node_client,
    master_of,
    redis_client,
)
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.settings import is_cluster_url
from ecigdis_ws.transport.socketio_overrides.managers import DirectEmitManager

log = get_logger(__name__)

# Reconnect attempts back off from the first to the last delay, doubling.
FIRST_RETRY_S = 0.2
LAST_RETRY_S = 2.0
SIGNATURE_VERSION = 1


def sign(key: bytes, body: str) -> str:
    digest = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"v": SIGNATURE_VERSION, "sig": digest, "body": body})


def verify(key: bytes, raw: bytes | str) -> dict[str, Any] | None:
    """The message a node published, or None for anything forged or malformed."""
    try:
        envelope = json.loads(raw)
        body = envelope["body"]
        expected = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
        if envelope.get("v") != SIGNATURE_VERSION or not hmac.compare_digest(
            expected, str(envelope["sig"])
        ):
            return None
        message = json.loads(body)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return message if isinstance(message, dict) and "method" in message else None


async def _quietly_close(pubsub: Any, client: aioredis.Redis) -> None:
    for closing in (pubsub.aclose, client.aclose):
        try:
            await closing()
        except Exception:  # already broken: nothing left to release cleanly
            log.debug("closing a broken Redis connection failed")


# DirectEmitManager lands between the pub/sub layer and AsyncManager in the MRO,
# so this node's deliveries, local or from the channel, take the direct path.
class ClusterRedisManager(socketio.AsyncRedisManager, DirectEmitManager):  # type: ignore[misc]
    def __init__(self, url: str, channel: str, key: bytes, timeout_s: float) -> None:
        super().__init__(url=url, channel=channel)
        self.redis: RedisClient | None = None
        self._key = key
        self._timeout_s = timeout_s
        self.listening = False
        self.dropped = 0  # forged or malformed channel messages seen
        # Called when the channel is back after a loss: what other nodes published
        # meanwhile never reached this node's clients, so they must catch up.
        self.on_recovered: Callable[[], Awaitable[None]] | None = None

    def _redis_connect(self) -> None:
        """The publishing connection (the listener makes its own, see below)."""
        if self.redis is None:
            self.redis = redis_client(self.redis_url, self._timeout_s, self._timeout_s)
        self.connected = True

    async def _publish(self, data: Any) -> None:
        """One attempt within the timeout: the other nodes catch up from the
        database (`since`) if it fails; the local delivery already happened."""
        try:
            if not self.connected:
                self._redis_connect()
            client, where = await self._channel_node()
            await client.publish(self.channel, sign(self._key, self.json.dumps(data)), **where)
        except Exception as exc:  # redis-py raises several unrelated types
            self.connected = False
            log.warning("fan-out to other nodes failed", reason=str(exc) or type(exc).__name__)

    async def _channel_node(self) -> tuple[RedisClient, dict[str, Any]]:
        """The publishing client, and where its commands go: on a Redis Cluster the
        master serving the channel's slot (not every node, redis-py's default for
        PING: a dead replica changes nothing for this server), else anywhere."""
        assert self.redis is not None
        if isinstance(self.redis, RedisCluster):
            return self.redis, {"target_nodes": await master_of(self.redis, self.channel)}
        return self.redis, {}

    async def _redis_listen_with_retries(self) -> AsyncIterator[Any]:
        delay = FIRST_RETRY_S
        lost = False
        while True:
            listener: aioredis.Redis | None = None
            try:
                listener = await self._listener()
                self.pubsub = listener.pubsub(ignore_subscribe_messages=True)
                await self.pubsub.subscribe(self.channel)
                self.listening = True
                delay = FIRST_RETRY_S
                log.info("listening on the fan-out channel", channel=self.channel)
                if lost and self.on_recovered is not None:
                    await self.on_recovered()
                lost = True  # from here on, leaving this block means a loss
                async for message in self.pubsub.listen():
                    yield message
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fan-out channel lost; reconnecting",
                            reason=str(exc) or type(exc).__name__, retry_in_s=delay)
            self.listening = False
            if listener is not None:
                await _quietly_close(self.pubsub, listener)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, LAST_RETRY_S)

    async def _listener(self) -> aioredis.Redis:
        """A connection without a socket timeout, for SUBSCRIBE (see the docstring)."""
        if is_cluster_url(self.redis_url):
            return await cluster_node_client(self.redis_url, self.channel, self._timeout_s)
        client = redis_client(self.redis_url, None, self._timeout_s)
        assert isinstance(client, aioredis.Redis)
        return client

    async def _listen(self) -> AsyncIterator[dict[str, Any]]:
        channel = self.channel.encode()
        async for message in self._redis_listen_with_retries():
            if message.get("channel") != channel or message.get("type") != "message":
                continue
            verified = verify(self._key, message.get("data", b""))
            if verified is None:
                self.dropped += 1
                log.warning("dropped a forged or malformed fan-out message")
                continue
            yield verified

    async def ping(self) -> bool:
        try:
            if not self.connected:
                self._redis_connect()
            async with asyncio.timeout(self._timeout_s):
                client, where = await self._channel_node()
                await client.ping(**where)
        except Exception:
            self.connected = False
            return False
        return self.listening
