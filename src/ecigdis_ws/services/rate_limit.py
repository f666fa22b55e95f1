"""Token buckets for RATE_LIMIT_EVENTS (per socket), RATE_LIMIT_MESSAGES (per user)
and RATE_LIMIT_CONVERSATIONS (per user, per minute)."""

from __future__ import annotations

from collections.abc import Hashable

from ecigdis_ws.clock import Clock

# docs/protocol.md: bursts of twice the rate (per second, or per the limiter's period).
BURST_FACTOR = 2


class TokenBucket:
    __slots__ = ("_capacity", "_rate", "_tokens", "_updated")

    def __init__(self, rate: float, now: float, capacity: float | None = None) -> None:
        self._rate = rate
        self._capacity = rate * BURST_FACTOR if capacity is None else capacity
        self._tokens = self._capacity
        self._updated = now

    def take(self, now: float) -> bool:
        elapsed = max(now - self._updated, 0.0)
        self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class RateLimiter:
    """One bucket per key: `rate` per `period_s` seconds, bursts of twice that; a
    rate of 0 turns the limit off."""

    def __init__(self, rate: int, clock: Clock, period_s: float = 1.0) -> None:
        self._rate = rate
        self._period_s = period_s
        self._clock = clock
        self._buckets: dict[Hashable, TokenBucket] = {}

    def allow(self, key: Hashable) -> bool:
        if self._rate <= 0:
            return True
        now = self._clock.now()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(
                self._rate / self._period_s, now, self._rate * BURST_FACTOR
            )
        return bucket.take(now)

    def forget(self, key: Hashable) -> None:
        self._buckets.pop(key, None)
