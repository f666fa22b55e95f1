"""Retention: the event log (EVENT_LOG_RETENTION_S) and, when asked, old messages
(MESSAGE_RETENTION_DAYS) are deleted in small batches, in the background.

Each batch is one short transaction of at most PRUNE_BATCH rows, and the next
waits PRUNE_PAUSE_S on the injected clock, so a backlog of millions of rows is
worked off without holding up sends: on SQLite the single writer is shared with
message inserts, and a send queued behind a batch waits for that batch only.

Every node of a cluster runs it, independently: each batch deletes a range of
the oldest rows, a range another node has deleted already deletes nothing, and
the record of how far the event log is pruned only grows. A check with nothing
to delete costs two or three indexed reads, so several nodes checking is cheap;
no lock or leader is needed.
"""

from __future__ import annotations

from ecigdis_ws.clock import Clock, Timer
from ecigdis_ws.errors import StorageUnavailable
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.services.event_feed import SETTLE_MARGIN_MS
from ecigdis_ws.services.tasks import BackgroundTasks
from ecigdis_ws.storage.base import EventRecords, MessageRecords

log = get_logger(__name__)

# Rows per DELETE: a few milliseconds of SQLite's single writer (about what one
# group commit of 256 sends holds it), so a send queued behind a batch is barely
# slowed; a million-row backlog is still gone in minutes.
PRUNE_BATCH = 500
# Between two batches the writer is left to the sends for this long.
PRUNE_PAUSE_S = 0.05
# A check with nothing to delete runs at most this far apart (a tenth of the
# retention when that is shorter), so the log is seldom much past its retention.
CHECK_EVERY_MAX_S = 300.0
DAY_MS = 86_400_000


class RetentionService:
    def __init__(
        self,
        *,
        events: EventRecords,
        messages: MessageRecords,
        clock: Clock,
        tasks: BackgroundTasks,
        event_log_retention_s: int,
        message_retention_days: int,
        db_timeout_ms: int,
    ) -> None:
        self._events = events
        self._messages = messages
        self._clock = clock
        self._tasks = tasks
        # Never less than the long-poll's settle window: an id a poll may still be
        # waiting to see commit is not deleted under it.
        self._event_keep_ms = max(event_log_retention_s * 1000, db_timeout_ms + SETTLE_MARGIN_MS)
        self._message_keep_ms = message_retention_days * DAY_MS  # 0: kept forever
        self.check_every_s = min(CHECK_EVERY_MAX_S, self._event_keep_ms / 1000 / 10)
        self._timer: Timer | None = None
        self._running = False
        self.pruned_events = 0  # since start, for tests and logs
        self.pruned_messages = 0

    def start(self) -> None:
        """Check now and then for rows past their retention; run until stop()."""
        if self._running:
            return  # one chain of timers, whoever calls
        self._running = True
        self._arm(0.0)

    def stop(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, delay_s: float) -> None:
        if self._running:
            self._timer = self._clock.call_later(delay_s, self._due)

    def _due(self) -> None:
        self._timer = None
        self._tasks.spawn(self._batch())

    async def _batch(self) -> None:
        """One batch of each kind; the next soon when a batch was full, else at
        the next check (also after a failure: pruning is never left stopped)."""
        full = False
        try:
            full = await self._prune_once()
        except StorageUnavailable as exc:
            # The database is busy or away: try again at the next check.
            log.warning("retention: pruning postponed", reason=str(exc))
        finally:
            self._arm(PRUNE_PAUSE_S if full else self.check_every_s)

    async def _prune_once(self) -> bool:
        """True when a batch was full: more may be waiting."""
        now_ms = int(self._clock.now() * 1000)
        events = await self._events.prune_event_log(now_ms - self._event_keep_ms, PRUNE_BATCH)
        self.pruned_events += events
        full = events >= PRUNE_BATCH
        if self._message_keep_ms:
            messages = await self._messages.prune_messages(
                now_ms - self._message_keep_ms, PRUNE_BATCH
            )
            self.pruned_messages += messages
            full = full or messages >= PRUNE_BATCH
        return full
