"""The REST long-poll: every message, receipt and reaction of a user's
conversations, and the user's own membership changes made through the REST
create and the server API, in commit order, from the event log in the database.

The log's ids are the cursors. An autoincrement id is handed out when a row is
inserted, not when it commits, so on MariaDB a row with a smaller id can commit
after one with a larger id; a poller that moved its cursor past the larger id
would never see the smaller. So a poll only reads up to the *settled* position:
the highest id below which every id is committed or will never be (its
transaction rolled back). A missing id is waited for until the row after it is
older than DB_TIMEOUT_MS plus a margin: every transaction is given up by then
(the deadline covers the whole transaction and a given-up transaction is never
committed), so the id was rolled back. Normally there is no gap and nothing
waits. Each node tracks the settled position once for all its pollers.

Waiting polls are woken by this node's fan-out deliveries (while a poll waits,
the node reads the fan-out channels of its user's and conversations' rooms:
`Fanout.watch`), only those whose user is in that conversation; a timer
re-reads the log as well, for wake-ups missed while Redis was down or before a
watch's subscription was in place, and for gaps that settle with time.

Typing and presence are not in the log: a poll that carries a `live` position
also answers with the LiveEvents (services/live_events.py) buffered for its user
after it, and is woken by them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ecigdis_ws.clock import Clock, Timer
from ecigdis_ws.domain import FeedEvent, UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.fanout.base import conversation_room, user_room
from ecigdis_ws.services.live_events import LiveEvent, LiveEvents
from ecigdis_ws.storage.base import ConversationRecords, EventRecords

# Events in one poll answer: a client far behind gets several quick answers.
POLL_PAGE = 500
# Ids read per query while looking for the settled position.
SCAN_PAGE = 1000
# Waiting polls re-read the log this often, whatever the fan-out said.
RECHECK_S = 2.0
# Beyond DB_TIMEOUT_MS, how long a missing id may still commit: a COMMIT sent
# just before the deadline, and clock skew between the nodes writing the log.
SETTLE_MARGIN_MS = 5000

# Fanout.watch: read these rooms' deliveries here until the returned call.
Watch = Callable[[Iterable[str]], Callable[[], None]]


class CursorPruned(Exception):
    """The poll's cursor is older than the event log kept (EVENT_LOG_RETENTION_S):
    events after it may be gone. Not an error: the client is answered `resync` with
    the present `position`, catches up from history, and polls on from there."""

    def __init__(self, position: int) -> None:
        super().__init__(f"cursor pruned; resync from {position}")
        self.position = position


@dataclass(frozen=True)
class FeedPage:
    """One poll's answer: the next cursor, the log's events after the old one, and
    the live events after the poll's live position with the position to send next."""

    cursor: int
    events: list[FeedEvent]
    live: list[LiveEvent]
    live_after: int | None


@dataclass(eq=False)
class _Waiter:
    user_id: UserId
    conversations: set[int]
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    expired: bool = False
    asleep: bool = False  # waiting for a wake-up, with nothing left to read
    live_after: int | None = None  # watching typing and presence after this number
    unwatch: Callable[[], None] = lambda: None  # stops the fan-out watch of its rooms

    def expire(self) -> None:
        self.expired = True
        self.woken.set()


class EventFeed:
    def __init__(
        self,
        *,
        conversations: ConversationRecords,
        events: EventRecords,
        clock: Clock,
        hold_s: float,
        db_timeout_ms: int,
        max_polls_per_user: int = 0,
        live: LiveEvents | None = None,
        watch: Watch | None = None,
    ) -> None:
        self._conversations = conversations
        self._events = events
        self._watch = watch
        self._live = live
        if live is not None:
            live.on_event(self._live_arrived)
        self._max_polls_per_user = max_polls_per_user  # 0: no cap
        self._held_by_user: dict[UserId, int] = {}
        self._clock = clock
        self._hold_s = hold_s
        self._settle_ms = db_timeout_ms + SETTLE_MARGIN_MS
        self._settled: int | None = None
        self._scan_lock = asyncio.Lock()
        self._wakes = 0  # bumped on every wake-up; a scan is fresh as of one value
        self._scanned_at_wake = -1
        self._waiters: set[_Waiter] = set()
        self._recheck: Timer | None = None
        self._closed = False

    def _now_ms(self) -> int:
        return int(self._clock.now() * 1000)

    # -- the settled position -------------------------------------------------------

    async def settled(self, fresh: bool = True) -> int:
        """The settled position, re-read unless a scan since the last wake-up did."""
        if fresh:
            self._wakes += 1
        wanted = self._wakes
        async with self._scan_lock:
            if self._settled is not None and self._scanned_at_wake >= wanted:
                return self._settled
            as_of = self._wakes
            self._settled = await self._scan()
            self._scanned_at_wake = as_of
            return self._settled

    async def _scan(self) -> int:
        now_ms = self._now_ms()
        position = self._settled
        if position is None:
            # Every id below an event this old was handed out before it: settled.
            position = await self._events.event_log_id_before(now_ms - self._settle_ms)
        # Pruned ids are settled (retention keeps at least the settle window), and
        # the ids missing below the oldest kept row are no gap to wait for.
        position = max(position, await self._events.event_log_pruned_through())
        while True:
            rows = await self._events.event_log_ids(position, SCAN_PAGE)
            for event_id, created_at_ms in rows:
                if event_id != position + 1 and now_ms - created_at_ms < self._settle_ms:
                    return position  # ids in between may still commit
                position = event_id
            if len(rows) < SCAN_PAGE:
                return position

    # -- polling --------------------------------------------------------------------

    async def poll(self, user_id: UserId, cursor: int | None) -> tuple[int, list[FeedEvent]]:
        """(next cursor, events after `cursor`); held up to the hold time when none.
        No cursor: the current position and no events, at once. A cursor older
        than what the log keeps raises CursorPruned, with the present position."""
        page = await self.poll_page(user_id, cursor)
        return page.cursor, page.events

    async def poll_page(
        self, user_id: UserId, cursor: int | None, live_after: int | None = None
    ) -> FeedPage:
        """poll, and with `live_after` the user's live events after it: an answer
        when there are any, so typing and presence wake a held poll too."""
        if cursor is None:
            return FeedPage(await self.settled(), [], [], self._live_last(live_after))
        waiter = await self._waiter(user_id, cursor)
        waiter.live_after = live_after
        hold = self._clock.call_later(self._hold_s, waiter.expire)
        try:
            fresh = True
            while True:
                waiter.woken.clear()
                position = await self.settled(fresh)
                fresh = False
                events: list[FeedEvent] = []
                if position > cursor:
                    events = await self._events.events_for_user(
                        user_id, cursor, position, POLL_PAGE
                    )
                    # Asked after the read: a prune that committed before the read
                    # began is seen here, one after it deleted nothing we read.
                    if await self._events.event_log_pruned_through() > cursor:
                        raise CursorPruned(position)
                    cursor = events[-1].id if len(events) == POLL_PAGE else position
                live = self._live_for(waiter)
                if events or live or waiter.expired or self._closed:
                    return FeedPage(cursor, events, live, self._live_last(live_after))
                waiter.asleep = True
                await waiter.woken.wait()
                waiter.asleep = False
        finally:
            hold.cancel()
            waiter.unwatch()
            self._waiters.discard(waiter)
            self._give_back_slot(user_id)

    def _live_for(self, waiter: _Waiter) -> list[LiveEvent]:
        if self._live is None or waiter.live_after is None:
            return []
        return self._live.after(waiter.live_after, waiter.user_id, waiter.conversations)

    def _live_last(self, live_after: int | None) -> int | None:
        """The live position a poll answer moves to: all buffered so far was looked at."""
        return None if self._live is None or live_after is None else self._live.last

    async def _waiter(self, user_id: UserId, cursor: int) -> _Waiter:
        """The poll's waiter, registered, holding one of the user's places."""
        self._take_slot(user_id)
        try:
            if cursor > await self._events.event_log_last_id():
                raise ChatError(ErrorCode.INVALID_PAYLOAD,
                                "cursor is ahead of the event log: poll again without one")
            waiter = _Waiter(user_id, await self._conversations.conversation_ids_of(user_id))
        except BaseException:
            self._give_back_slot(user_id)
            raise
        if self._watch is not None:
            # With per-room fan-out, this node reads these rooms' channels only
            # while someone here needs them: the poll does, for its wake-ups and
            # its user's live events.
            rooms = [conversation_room(c) for c in waiter.conversations]
            waiter.unwatch = self._watch([user_room(user_id), *rooms])
        self._waiters.add(waiter)
        self._arm_recheck()
        return waiter

    def _take_slot(self, user_id: UserId) -> None:
        """Each held poll is a request, a waiter and a wake-up check on every
        delivery: past MAX_POLLS_PER_USER the user's next one is refused at once,
        counted from here (before any await) so concurrent requests cannot slip by."""
        held = self._held_by_user.get(user_id, 0)
        if self._max_polls_per_user and held >= self._max_polls_per_user:
            raise ChatError(ErrorCode.RATE_LIMITED,
                            f"{held} long-polls already held for this user")
        self._held_by_user[user_id] = held + 1

    def _give_back_slot(self, user_id: UserId) -> None:
        held = self._held_by_user.pop(user_id, 1) - 1
        if held:
            self._held_by_user[user_id] = held

    # -- wake-ups -------------------------------------------------------------------

    def conversation_changed(self, conversation_id: int) -> None:
        """A message, receipt or reaction of this conversation was delivered on this
        node (so it is committed): wake the polls of its members."""
        self._wakes += 1
        for waiter in self._waiters:
            if conversation_id in waiter.conversations:
                waiter.woken.set()

    def membership_changed(self, conversation_id: int, user_id: UserId, member: bool) -> None:
        """The user was added to or removed from the conversation."""
        self.users_changed(conversation_id, frozenset({str(user_id)}), member)

    def users_changed(self, conversation_id: int, users: frozenset[str], member: bool) -> None:
        """These users (ids as text, as a user room names them) were added to or
        removed from the conversation: one walk over the waiters for all of them."""
        self._wakes += 1
        for waiter in self._waiters:
            if str(waiter.user_id) in users:
                if member:
                    waiter.conversations.add(conversation_id)
                else:
                    waiter.conversations.discard(conversation_id)
                waiter.woken.set()

    def _live_arrived(self, live: LiveEvent) -> None:
        """A typing or presence event was buffered: wake the polls it is for."""
        for waiter in self._waiters:
            if waiter.live_after is not None and live.for_user(
                waiter.user_id, waiter.conversations
            ):
                waiter.woken.set()

    def _arm_recheck(self) -> None:
        if self._recheck is None and self._waiters:
            self._recheck = self._clock.call_later(RECHECK_S, self._recheck_all)

    def _recheck_all(self) -> None:
        self._recheck = None
        self._wakes += 1
        for waiter in self._waiters:
            waiter.woken.set()
        self._arm_recheck()

    def close(self) -> None:
        """Shutting down: every waiting poll answers now, with what it has."""
        self._closed = True
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        for waiter in self._waiters:
            waiter.woken.set()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def all_asleep(self) -> bool:
        """Every waiting poll has read all it was woken for and waits again: what
        has happened so far leaves them held (observable state for tests)."""
        return all(w.asleep and not w.woken.is_set() for w in self._waiters)
