"""RateLimiter: one token bucket per key (a socket for RATE_LIMIT_EVENTS, a user for
RATE_LIMIT_MESSAGES). A bucket holds twice the per-second rate, starts full and
refills continuously at the rate; a rate of 0 turns the limit off."""

from __future__ import annotations

from ecigdis_ws.clock import ManualClock
from ecigdis_ws.services.rate_limit import BURST_FACTOR, RateLimiter


def allowed(limiter: RateLimiter, key: object, attempts: int) -> int:
    """How many of `attempts` calls in a row, at one instant, were allowed."""
    return sum(limiter.allow(key) for _ in range(attempts))


def test_a_new_key_may_burst_twice_the_rate_and_no_more() -> None:
    limiter = RateLimiter(5, ManualClock())

    assert BURST_FACTOR == 2
    assert [limiter.allow("s1") for _ in range(11)] == [True] * 10 + [False]


def test_an_empty_bucket_earns_one_event_per_one_over_the_rate_seconds() -> None:
    clock = ManualClock()
    limiter = RateLimiter(4, clock)
    assert allowed(limiter, "s1", 8) == 8

    clock.advance(0.125)
    assert not limiter.allow("s1")  # half a token
    clock.advance(0.125)
    assert limiter.allow("s1")  # exactly one token
    assert not limiter.allow("s1")


def test_refusals_do_not_spend_the_fraction_already_earned() -> None:
    clock = ManualClock()
    limiter = RateLimiter(2, clock)
    assert allowed(limiter, "s1", 4) == 4

    clock.advance(0.25)  # half a token
    assert allowed(limiter, "s1", 3) == 0
    clock.advance(0.25)  # the other half: one event
    assert limiter.allow("s1")


def test_a_long_idle_refills_the_bucket_only_up_to_the_burst() -> None:
    clock = ManualClock()
    limiter = RateLimiter(3, clock)
    assert allowed(limiter, "s1", 6) == 6

    clock.advance(3600)

    assert allowed(limiter, "s1", 20) == 6


def test_each_key_has_its_own_bucket() -> None:
    limiter = RateLimiter(1, ManualClock())
    assert allowed(limiter, "s1", 5) == 2

    assert allowed(limiter, "s2", 5) == 2
    assert allowed(limiter, 7, 5) == 2  # user ids are keys too (RATE_LIMIT_MESSAGES)


def test_a_rate_of_zero_allows_everything() -> None:
    limiter = RateLimiter(0, ManualClock())

    assert allowed(limiter, "s1", 10_000) == 10_000


def test_a_forgotten_key_starts_again_with_a_full_bucket() -> None:
    limiter = RateLimiter(2, ManualClock())
    assert allowed(limiter, "s1", 4) == 4
    assert not limiter.allow("s1")

    limiter.forget("s1")

    assert allowed(limiter, "s1", 10) == 4


def test_forgetting_a_key_never_seen_is_harmless() -> None:
    limiter = RateLimiter(2, ManualClock())

    limiter.forget("nobody")

    assert allowed(limiter, "nobody", 10) == 4


def test_a_clock_stepping_backwards_grants_no_tokens() -> None:
    clock = ManualClock()
    limiter = RateLimiter(2, clock)
    assert allowed(limiter, "s1", 4) == 4

    clock.advance(-30)  # the wall clock is stepped back (NTP)

    assert not limiter.allow("s1")
    clock.advance(0.5)  # time moves on from there: tokens accrue as usual
    assert limiter.allow("s1")
    assert not limiter.allow("s1")


def test_a_per_minute_limiter_bursts_twice_the_rate_and_refills_over_the_minute() -> None:
    clock = ManualClock()
    limiter = RateLimiter(6, clock, period_s=60)  # RATE_LIMIT_CONVERSATIONS
    assert allowed(limiter, "u1", 13) == 12

    clock.advance(9.9)
    assert not limiter.allow("u1")
    clock.advance(0.1)  # one every 10 s
    assert limiter.allow("u1")
    clock.advance(3600)
    assert allowed(limiter, "u1", 20) == 12
