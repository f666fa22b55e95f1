"""Which channels a node subscribes to and when it lets them go, on the manual clock."""

from __future__ import annotations

from ecigdis_ws.clock import ManualClock
from ecigdis_ws.cluster.channel_subscriptions import Subscriptions

LINGER_S = 10.0


def subscriptions() -> tuple[Subscriptions, ManualClock, list[int]]:
    clock = ManualClock()
    subs = Subscriptions(clock, LINGER_S, always=("everyone", "node"))
    told: list[int] = []
    subs.on_change = lambda: told.append(1)
    return subs, clock, told


def test_the_first_hold_subscribes_and_later_ones_change_nothing() -> None:
    subs, _, told = subscriptions()
    subs.hold("room:1")
    subs.hold("room:1")
    assert subs.take_changes() == (["room:1"], [])
    assert len(told) == 1
    assert subs.wanted == ["everyone", "node", "room:1"]


def test_a_channel_no_longer_held_is_let_go_after_the_delay_not_before() -> None:
    subs, clock, _ = subscriptions()
    subs.hold("room:1")
    subs.hold("room:1")
    subs.take_changes()
    subs.release("room:1")
    subs.release("room:1")
    clock.advance(LINGER_S - 0.1)
    assert subs.take_changes() == ([], [])
    assert "room:1" in subs.wanted  # a reconnect meanwhile subscribes it too
    clock.advance(0.1)
    assert subs.take_changes() == ([], ["room:1"])
    assert subs.wanted == ["everyone", "node"]


def test_held_again_within_the_delay_it_is_never_unsubscribed() -> None:
    subs, clock, told = subscriptions()
    subs.hold("room:1")
    subs.take_changes()
    subs.release("room:1")
    clock.advance(LINGER_S / 2)
    subs.hold("room:1")
    clock.advance(LINGER_S * 2)
    assert subs.take_changes() == ([], [])
    assert len(told) == 1


def test_held_again_after_the_unsubscribe_was_decided_but_not_sent_nothing_is_sent() -> None:
    subs, clock, _ = subscriptions()
    subs.hold("room:1")
    subs.take_changes()
    subs.release("room:1")
    clock.advance(LINGER_S)
    subs.hold("room:1")
    assert subs.take_changes() == ([], [])
    assert "room:1" in subs.wanted


def test_held_again_after_the_unsubscribe_was_sent_it_is_subscribed_again() -> None:
    subs, clock, _ = subscriptions()
    subs.hold("room:1")
    subs.take_changes()
    subs.release("room:1")
    clock.advance(LINGER_S)
    assert subs.take_changes() == ([], ["room:1"])
    subs.hold("room:1")
    assert subs.take_changes() == (["room:1"], [])


def test_channels_let_go_at_different_times_go_each_at_its_own_deadline() -> None:
    subs, clock, _ = subscriptions()
    for channel in ("room:1", "room:2"):
        subs.hold(channel)
    subs.take_changes()
    subs.release("room:1")
    clock.advance(LINGER_S / 2)
    subs.release("room:2")
    clock.advance(LINGER_S / 2)
    assert subs.take_changes() == ([], ["room:1"])
    clock.advance(LINGER_S / 2)
    assert subs.take_changes() == ([], ["room:2"])
    assert clock.pending == 0


def test_a_release_without_a_hold_changes_nothing() -> None:
    subs, clock, _ = subscriptions()
    subs.release("room:1")
    clock.advance(LINGER_S * 2)
    assert subs.take_changes() == ([], [])
    assert subs.wanted == ["everyone", "node"]


def test_a_reconnect_forgets_pending_changes_and_subscribes_what_is_wanted() -> None:
    subs, _, _ = subscriptions()
    subs.hold("room:1")
    subs.forget_changes()
    assert subs.take_changes() == ([], [])
    assert subs.wanted == ["everyone", "node", "room:1"]


async def test_ready_waits_for_redis_to_confirm_and_a_loss_makes_it_wait_again() -> None:
    subs, _, _ = subscriptions()
    subs.hold("room:1")
    waiting = subs.ready("room:1")
    assert waiting is not None and not waiting.done()
    subs.confirmed("room:1")
    assert waiting.done()
    assert subs.ready("room:1") is None  # confirmed: nothing to wait for
    subs.lost()
    assert subs.ready("room:1") is not None


async def test_a_channel_let_go_is_no_longer_ready() -> None:
    subs, clock, _ = subscriptions()
    subs.hold("room:1")
    subs.confirmed("room:1")
    subs.release("room:1")
    clock.advance(LINGER_S)
    subs.take_changes()  # the UNSUBSCRIBE goes out
    assert subs.ready("room:1") is not None
