"""Where users are connected, counted per node, so the cluster announces
`user:online` exactly once on a user's first connection anywhere and
`user:offline` exactly once after their last one closed (or their node died).

Each node keeps a count of sockets per user; a count of 0 means "in the grace
period" on that node. The grace timer itself lives in PresenceService.
"""

from __future__ import annotations

from typing import Protocol

from ecigdis_ws.cluster.redis_connection import RedisClient
from ecigdis_ws.domain import UserId


class PresenceRegistry(Protocol):
    async def join(self, user_id: UserId, name: str, now_ms: int) -> bool:
        """Count one more socket of the user here; True if they were nowhere before."""

    async def leave(self, user_id: UserId) -> None:
        """Count one socket fewer here (the user's entry stays, at 0, during the grace)."""

    async def release(self, user_id: UserId, now_ms: int) -> bool:
        """The grace period here ended: True if the user is now connected nowhere."""

    async def online(self, now_ms: int) -> dict[str, str]:
        """Every user connected (or in a grace period) on a live node: id text -> name."""

    async def heartbeat(self, now_ms: int) -> tuple[bool, list[str]]:
        """Refresh this node's lease. Return whether this node's entries were still
        there (Redis may have restarted empty) and the users of dead nodes now
        connected nowhere."""

    async def restore(self, counts: dict[UserId, int], names: dict[UserId, str]) -> None:
        """Write this node's entries back after Redis lost them."""

    async def leave_cluster(self, now_ms: int) -> list[str]:
        """This node stops: drop its entries; return users now connected nowhere."""


class LocalPresenceRegistry:
    """A single node: the counts are all there is."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._names: dict[str, str] = {}

    async def join(self, user_id: UserId, name: str, now_ms: int) -> bool:
        key = str(user_id)
        new = key not in self._counts
        self._counts[key] = self._counts.get(key, 0) + 1
        self._names[key] = name
        return new

    async def leave(self, user_id: UserId) -> None:
        key = str(user_id)
        if self._counts.get(key, 0) > 0:
            self._counts[key] -= 1

    async def release(self, user_id: UserId, now_ms: int) -> bool:
        key = str(user_id)
        if self._counts.get(key, 0) > 0:
            return False
        self._counts.pop(key, None)
        self._names.pop(key, None)
        return True

    async def online(self, now_ms: int) -> dict[str, str]:
        return {key: self._names[key] for key in self._counts}

    async def heartbeat(self, now_ms: int) -> tuple[bool, list[str]]:
        return True, []

    async def restore(self, counts: dict[UserId, int], names: dict[UserId, str]) -> None:
        """Nothing to restore: the counts live in this process."""

    async def leave_cluster(self, now_ms: int) -> list[str]:
        gone = list(self._counts)
        self._counts.clear()
        self._names.clear()
        return gone


# Live nodes are the members of the `nodes` sorted set whose score (lease end,
# in ms) is not in the past; each node's counts are the hash `node:<id>`.
# The scripts reach the node hashes by name (ARGV), not through KEYS: on a Redis
# Cluster that is allowed because every key shares the prefix's hash tag, so one
# slot (see redis_connection.key_base).
_LIVE_NODES = """
local function live_nodes(nodes_key, now)
  return redis.call('ZRANGEBYSCORE', nodes_key, now, '+inf')
end
local function elsewhere(prefix, nodes, me, user)
  for _, node in ipairs(nodes) do
    if node ~= me and redis.call('HEXISTS', prefix .. node, user) == 1 then
      return true
    end
  end
  return false
end
"""

# KEYS: nodes, this node's hash, names. ARGV: node id, user, name, now, hash prefix.
_JOIN = _LIVE_NODES + """
local existed = redis.call('HEXISTS', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
if existed == 1 then return 0 end
if elsewhere(ARGV[5], live_nodes(KEYS[1], ARGV[4]), ARGV[1], ARGV[2]) then return 0 end
return 1
"""

# KEYS: this node's hash. ARGV: user.
_LEAVE = """
local count = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if count > 0 then redis.call('HINCRBY', KEYS[1], ARGV[1], -1) end
return 0
"""

# KEYS: nodes, this node's hash, names. ARGV: node id, user, now, hash prefix.
_RELEASE = _LIVE_NODES + """
local count = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '-1')
if count > 0 then return 0 end
if count == 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
if elsewhere(ARGV[4], live_nodes(KEYS[1], ARGV[3]), ARGV[1], ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[3], ARGV[2])
return 1
"""

# KEYS: nodes. ARGV: node id, now, lease end (or '' to leave), hash prefix, hash ttl ms.
# Removes dead nodes (and this one when leaving) exactly once, since the script
# runs atomically; returns their users who are connected on no live node.
_HEARTBEAT = _LIVE_NODES + """
local leaving = ARGV[3] == ''
-- Whether Redis still knew this node: its lease, which only heartbeats write
-- (a join after an empty restart recreates the node's hash, not its lease).
local mine = redis.call('ZSCORE', KEYS[1], ARGV[1]) and 1 or 0
if leaving then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  redis.call('PEXPIRE', ARGV[4] .. ARGV[1], ARGV[5])
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
if leaving then table.insert(dead, ARGV[1]) end
for _, node in ipairs(dead) do redis.call('ZREM', KEYS[1], node) end
local live = live_nodes(KEYS[1], ARGV[2])
local gone = {}
for _, node in ipairs(dead) do
  local users = redis.call('HKEYS', ARGV[4] .. node)
  redis.call('DEL', ARGV[4] .. node)
  for _, user in ipairs(users) do
    if not elsewhere(ARGV[4], live, '', user) then table.insert(gone, user) end
  end
end
table.insert(gone, 1, tostring(mine))
return gone
"""

# KEYS: nodes, names. ARGV: now, hash prefix.
_ONLINE = _LIVE_NODES + """
local seen = {}
local result = {}
for _, node in ipairs(live_nodes(KEYS[1], ARGV[1])) do
  for _, user in ipairs(redis.call('HKEYS', ARGV[2] .. node)) do
    if not seen[user] then
      seen[user] = true
      table.insert(result, user)
      table.insert(result, redis.call('HGET', KEYS[2], user) or user)
    end
  end
end
return result
"""


class RedisPresenceRegistry:
    """Counts per node in Redis; a node's lease (PRESENCE_TTL_MS) is refreshed by
    its heartbeat, and any node's heartbeat reaps the nodes that stopped."""

    def __init__(
        self, client: RedisClient, key_prefix: str, node_id: str, ttl_ms: int
    ) -> None:
        self._redis = client
        self._node_id = node_id
        self._ttl_ms = ttl_ms
        self._nodes_key = f"{key_prefix}:presence:nodes"
        self._names_key = f"{key_prefix}:presence:names"
        self._hash_prefix = f"{key_prefix}:presence:node:"
        self._node_key = self._hash_prefix + node_id
        self._join = client.register_script(_JOIN)
        self._leave = client.register_script(_LEAVE)
        self._release = client.register_script(_RELEASE)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._online = client.register_script(_ONLINE)

    async def join(self, user_id: UserId, name: str, now_ms: int) -> bool:
        first = await self._join(
            keys=[self._nodes_key, self._node_key, self._names_key],
            args=[self._node_id, str(user_id), name, now_ms, self._hash_prefix],
        )
        return bool(first)

    async def leave(self, user_id: UserId) -> None:
        await self._leave(keys=[self._node_key], args=[str(user_id)])

    async def release(self, user_id: UserId, now_ms: int) -> bool:
        gone = await self._release(
            keys=[self._nodes_key, self._node_key, self._names_key],
            args=[self._node_id, str(user_id), now_ms, self._hash_prefix],
        )
        return bool(gone)

    async def online(self, now_ms: int) -> dict[str, str]:
        flat = await self._online(
            keys=[self._nodes_key, self._names_key], args=[now_ms, self._hash_prefix]
        )
        return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def heartbeat(self, now_ms: int) -> tuple[bool, list[str]]:
        return await self._beat(now_ms, str(now_ms + self._ttl_ms))

    async def leave_cluster(self, now_ms: int) -> list[str]:
        return (await self._beat(now_ms, ""))[1]

    async def restore(self, counts: dict[UserId, int], names: dict[UserId, str]) -> None:
        if not counts:
            return
        # MULTI over two keys: one slot on a Redis Cluster too (the shared hash tag).
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._node_key, mapping={str(u): c for u, c in counts.items()})
            pipe.pexpire(self._node_key, self._ttl_ms * 2)
            pipe.hset(self._names_key, mapping={str(u): n for u, n in names.items()})
            await pipe.execute()

    async def _beat(self, now_ms: int, lease_end: str) -> tuple[bool, list[str]]:
        mine, *gone = await self._heartbeat(
            keys=[self._nodes_key],
            args=[self._node_id, now_ms, lease_end, self._hash_prefix, self._ttl_ms * 2],
        )
        return _text(mine) == "1", [_text(user) for user in gone]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
