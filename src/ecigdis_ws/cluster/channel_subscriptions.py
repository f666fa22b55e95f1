"""The Redis channels a node wants to read, counted by who needs them: the sans-I/O
part of the per-room fan-out (FANOUT_CHANNELS=per-room; the I/O is
cluster/channel_listener.py).

A channel is held while a socket here is in its room or a long-poll watches it,
and let go FANOUT_UNSUBSCRIBE_DELAY_MS after the last one went, so that a socket
that reconnects or rejoins costs no UNSUBSCRIBE and SUBSCRIBE.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ecigdis_ws.clock import Clock, Timer


class Subscriptions:
    """The channels a node wants to read, counted by who needs them.

    `hold` and `release` count the sockets' rooms and the long-polls' watches per
    channel; a channel no longer held is let go after `linger_s`, unless held again
    meanwhile. The I/O side (cluster/channel_listener.py) is told by `on_change`
    that `take_changes` has something, and reads `wanted` after a reconnect.
    """

    def __init__(self, clock: Clock, linger_s: float, always: tuple[str, ...]) -> None:
        self._clock = clock
        self._linger_s = linger_s
        self._always = always
        self._held: dict[str, int] = {}
        # Unheld channels still subscribed, with when to let them go, in that order
        # (one linger for all, so insertion order is deadline order).
        self._lingering: dict[str, float] = {}
        self._subscribe: set[str] = set()
        self._unsubscribe: set[str] = set()
        self._timer: Timer | None = None
        # Channels Redis confirmed subscribed in the listener's present session,
        # and who waits for one to be (see `ready`).
        self._confirmed: set[str] = set()
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        self.on_change: Callable[[], None] = lambda: None

    @property
    def wanted(self) -> list[str]:
        """Every channel to be subscribed now (after a reconnect: all of them)."""
        return [*self._always, *self._held, *self._lingering]

    def hold(self, channel: str) -> None:
        count = self._held.get(channel, 0)
        self._held[channel] = count + 1
        if count or self._lingering.pop(channel, None) is not None:
            return  # subscribed already
        if channel in self._unsubscribe:
            self._unsubscribe.discard(channel)  # let go, but the UNSUBSCRIBE not sent yet
        else:
            self._subscribe.add(channel)
            self.on_change()

    def release(self, channel: str) -> None:
        count = self._held.pop(channel, 0) - 1
        if count > 0:
            self._held[channel] = count
        elif count == 0:
            self._lingering[channel] = self._clock.now() + self._linger_s
            self._arm()

    def take_changes(self) -> tuple[list[str], list[str]]:
        """What to SUBSCRIBE and UNSUBSCRIBE since the last call."""
        changes = (sorted(self._subscribe), sorted(self._unsubscribe))
        self._subscribe.clear()
        self._unsubscribe.clear()
        self._confirmed.difference_update(changes[1])
        return changes

    def ready(self, channel: str) -> asyncio.Future[None] | None:
        """None if Redis confirmed the channel subscribed; else a future done when
        it does: from then on, whatever is published there reaches this node."""
        if channel in self._confirmed:
            return None
        waiting: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(channel, []).append(waiting)
        return waiting

    def confirmed(self, channel: str) -> None:
        """Redis answered the SUBSCRIBE (SSUBSCRIBE) of `channel`."""
        self._confirmed.add(channel)
        for waiting in self._waiting.pop(channel, []):
            if not waiting.done():
                waiting.set_result(None)

    def lost(self) -> None:
        """The listener's session ended: nothing is subscribed until the next."""
        self._confirmed.clear()

    def forget_changes(self) -> None:
        """A new connection subscribes `wanted` itself: nothing is pending."""
        self._subscribe.clear()
        self._unsubscribe.clear()

    def _arm(self) -> None:
        if self._timer is None and self._lingering:
            due = next(iter(self._lingering.values()))
            self._timer = self._clock.call_later(due - self._clock.now(), self._let_go)

    def _let_go(self) -> None:
        self._timer = None
        now = self._clock.now()
        gone = False
        while self._lingering:
            channel, due = next(iter(self._lingering.items()))
            if due > now:
                break
            del self._lingering[channel]
            self._subscribe.discard(channel)
            self._unsubscribe.add(channel)
            gone = True
        self._arm()
        if gone:
            self.on_change()
