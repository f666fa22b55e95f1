"""RetentionService: the event log (EVENT_LOG_RETENTION_S) and, when set, old
messages (MESSAGE_RETENTION_DAYS) are deleted in batches of at most PRUNE_BATCH
rows, PRUNE_PAUSE_S apart on the injected clock, without holding up sends; and
the long-poll answers a cursor older than what is kept with a resync."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from ecigdis_ws.errors import StorageUnavailable
from ecigdis_ws.services.event_feed import SETTLE_MARGIN_MS, CursorPruned
from ecigdis_ws.services.retention import (
    CHECK_EVERY_MAX_S,
    DAY_MS,
    PRUNE_BATCH,
    PRUNE_PAUSE_S,
    RetentionService,
)
from ecigdis_ws.storage.sql import SqlStorage
from tests.services.conftest import ServiceHarness
from tests.services.feed_support import answer, rest_services, send, start_poll

HarnessFactory = Callable[..., AbstractAsyncContextManager[ServiceHarness]]
RETENTION_S = 60


def sql(harness: ServiceHarness) -> SqlStorage:
    storage = harness.storage
    assert isinstance(storage, SqlStorage)
    return storage


async def count(harness: ServiceHarness, table: str, where: str = "1 = 1") -> int:
    prefix = harness.settings.db_table_prefix
    row = await sql(harness).engine.fetch_one(f"SELECT COUNT(*) FROM {prefix}{table} WHERE {where}")
    assert row is not None
    return int(row[0])


async def old_receipts(harness: ServiceHarness, conversation: int, rows: int, age_s: float) -> None:
    """`rows` read-receipt events `age_s` old, committed in statements of 500."""
    prefix = harness.settings.db_table_prefix
    at_ms = harness.now_ms - int(age_s * 1000)
    for start in range(0, rows, 500):
        chunk = min(500, rows - start)
        await sql(harness).engine.execute(
            f"INSERT INTO {prefix}events (conversation_id, kind, message_id, user_id, "
            f"created_at_ms) VALUES {', '.join('(?, ?, ?, ?, ?)' for _ in range(chunk))}",
            [v for n in range(chunk) for v in (conversation, "read", start + n + 1, "1", at_ms)],
        )


def retention(harness: ServiceHarness) -> RetentionService:
    return harness.chat.retention


async def run_until_idle(harness: ServiceHarness) -> None:
    """Start the pruner and let it work off everything, batch after batch."""
    pruner = retention(harness)
    pruner.start()
    await harness.advance(0)
    for _ in range(10_000):
        before = (pruner.pruned_events, pruner.pruned_messages)
        await harness.advance(PRUNE_PAUSE_S)
        if (pruner.pruned_events, pruner.pruned_messages) == before:
            return
    raise AssertionError("the pruner never finished")


# -- the event log ----------------------------------------------------------------------


async def test_events_older_than_the_retention_go_and_newer_ones_stay(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(EVENT_LOG_RETENTION_S=str(RETENTION_S)) as harness:
        conversation = await harness.conversation(1, 2)
        old = [await send(harness, 2, conversation, f"old {n}") for n in range(3)]
        await harness.advance(RETENTION_S / 2)
        new = [await send(harness, 2, conversation, f"new {n}") for n in range(2)]
        retention(harness).start()
        await harness.advance(RETENTION_S / 2 - 1)  # the old ones are not yet past it
        assert await count(harness, "events") == 5
        await harness.advance(2 + retention(harness).check_every_s)
        kept = await sql(harness).engine.fetch_all(
            f"SELECT message_id FROM {harness.settings.db_table_prefix}events ORDER BY id")
        assert [row[0] for row in kept] == new
        # (only messages are logged here, so event ids are the message ids)
        assert await harness.storage.events.event_log_pruned_through() == old[-1]
        assert await count(harness, "messages") == 5  # the messages themselves stay


async def test_the_newest_event_is_kept_however_old(make_harness: HarnessFactory) -> None:
    async with make_harness(EVENT_LOG_RETENTION_S=str(RETENTION_S)) as harness:
        conversation = await harness.conversation(1, 2)
        for n in range(3):
            await send(harness, 2, conversation, f"m{n}")
        newest = await harness.storage.events.event_log_last_id()
        await harness.advance(RETENTION_S * 10)
        await run_until_idle(harness)
        assert await count(harness, "events") == 1
        assert await harness.storage.events.event_log_last_id() == newest
        assert await harness.storage.events.event_log_pruned_through() == newest - 1


async def test_a_backlog_goes_in_batches_of_prune_batch_rows_a_pause_apart(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(EVENT_LOG_RETENTION_S=str(RETENTION_S)) as harness:
        conversation = await harness.conversation(1, 2)
        backlog = 3 * PRUNE_BATCH + 7
        await old_receipts(harness, conversation, backlog, age_s=2 * RETENTION_S)
        await send(harness, 2, conversation, "now")
        pruner = retention(harness)
        pruner.start()
        await harness.advance(0)
        assert await count(harness, "events") == backlog + 1 - PRUNE_BATCH
        await harness.advance(PRUNE_PAUSE_S / 2)  # the pause is on the injected clock
        assert await count(harness, "events") == backlog + 1 - PRUNE_BATCH
        for batches in (2, 3):
            await harness.advance(PRUNE_PAUSE_S)
            assert await count(harness, "events") == backlog + 1 - batches * PRUNE_BATCH
        await harness.advance(PRUNE_PAUSE_S)
        assert await count(harness, "events") == 1
        # The last batch was not full: the next look is a check later, not a pause.
        await harness.advance(PRUNE_PAUSE_S)
        assert pruner.pruned_events == backlog
        assert pruner.check_every_s == min(CHECK_EVERY_MAX_S, RETENTION_S / 10)


async def test_retention_never_reaches_into_the_long_polls_settle_window(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(EVENT_LOG_RETENTION_S="1", DB_TIMEOUT_MS="3000") as harness:
        settle_s = (3000 + SETTLE_MARGIN_MS) / 1000
        conversation = await harness.conversation(1, 2)
        await send(harness, 2, conversation, "a")
        await send(harness, 2, conversation, "b")
        retention(harness).start()
        await harness.advance(settle_s - 1)
        assert await count(harness, "events") == 2
        await harness.advance(2)
        assert await count(harness, "events") == 1


async def test_sends_are_acknowledged_while_a_large_backlog_is_pruned(
    make_harness: HarnessFactory,
) -> None:
    """SQLite has one writer, shared by the pruner and the group commit of sends:
    sends keep being acknowledged between batches, all through the backlog."""
    async with make_harness(EVENT_LOG_RETENTION_S=str(RETENTION_S)) as harness:
        conversation = await harness.conversation(1, 2)
        backlog = 40 * PRUNE_BATCH
        await old_receipts(harness, conversation, backlog, age_s=2 * RETENTION_S)
        pruner = retention(harness)
        done = asyncio.Event()
        progress_at_ack: list[int] = []
        waits: list[float] = []

        async def sender() -> None:
            n = 0
            while not done.is_set():
                started = time.perf_counter()
                await send(harness, 2, conversation, f"during {n}")
                waits.append(time.perf_counter() - started)
                progress_at_ack.append(pruner.pruned_events)
                n += 1

        async def time_flows() -> None:
            # A batch is armed PRUNE_PAUSE_S after the one before it has finished;
            # the pause passes once a send was acknowledged after that batch (the
            # pause is where sends get the writer; a busy machine may be slower).
            started = time.perf_counter()
            pruner.start()
            harness.clock.advance(0)
            seen = 0
            while pruner.pruned_events < backlog:
                if pruner.pruned_events != seen and progress_at_ack[-1:] == [pruner.pruned_events]:
                    seen = pruner.pruned_events
                    harness.clock.advance(PRUNE_PAUSE_S)
                await asyncio.sleep(0.001)
            done.set()
            print(f"\n{backlog} rows pruned in {time.perf_counter() - started:.2f} s "
                  f"({backlog // PRUNE_BATCH} batches); {len(waits)} sends acknowledged "
                  f"meanwhile, the slowest in {max(waits) * 1000:.1f} ms")

        await asyncio.wait_for(asyncio.gather(sender(), time_flows()), 120)
        during = sorted({p for p in progress_at_ack if 0 < p < backlog})
        # Acknowledged after most batches, not held until the backlog was gone.
        assert len(during) >= backlog // PRUNE_BATCH // 2, during
        sent = len(progress_at_ack)
        assert await count(harness, "messages") == sent
        assert await count(harness, "events", "kind = 'message'") == sent


async def test_two_nodes_pruning_the_same_database_delete_each_row_once(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(EVENT_LOG_RETENTION_S=str(RETENTION_S)) as harness:
        conversation = await harness.conversation(1, 2)
        backlog = 5 * PRUNE_BATCH
        await old_receipts(harness, conversation, backlog, age_s=2 * RETENTION_S)
        await send(harness, 2, conversation, "now")
        newest = await harness.storage.events.event_log_last_id()
        other_node = RetentionService(
            events=harness.storage.events, messages=harness.storage.messages,
            clock=harness.clock, tasks=harness.chat.tasks,
            event_log_retention_s=RETENTION_S, message_retention_days=0,
            db_timeout_ms=harness.settings.db_timeout_ms,
        )
        other_node.start()
        await run_until_idle(harness)
        assert retention(harness).pruned_events + other_node.pruned_events == backlog
        assert retention(harness).pruned_events > 0 and other_node.pruned_events > 0
        assert await count(harness, "events") == 1
        assert await harness.storage.events.event_log_pruned_through() == newest - 1
        other_node.stop()


async def test_a_database_that_does_not_answer_postpones_pruning_to_the_next_check(
    make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with make_harness(EVENT_LOG_RETENTION_S=str(RETENTION_S)) as harness:
        conversation = await harness.conversation(1, 2)
        await old_receipts(harness, conversation, 10, age_s=2 * RETENTION_S)
        await send(harness, 2, conversation, "now")
        storage = harness.storage
        real = storage.events.prune_event_log

        async def unavailable(created_before_ms: int, batch: int) -> int:
            raise StorageUnavailable("sqlite: timed out")

        monkeypatch.setattr(storage.events, "prune_event_log", unavailable)
        pruner = retention(harness)
        pruner.start()
        await harness.advance(0)
        monkeypatch.setattr(storage.events, "prune_event_log", real)
        await harness.advance(pruner.check_every_s / 2)  # not at once: a check later
        assert await count(harness, "events") == 11
        await harness.advance(pruner.check_every_s)
        assert await count(harness, "events") == 1


async def test_stopped_the_pruner_deletes_nothing_more(make_harness: HarnessFactory) -> None:
    async with make_harness(EVENT_LOG_RETENTION_S=str(RETENTION_S)) as harness:
        conversation = await harness.conversation(1, 2)
        await old_receipts(harness, conversation, 2 * PRUNE_BATCH, age_s=2 * RETENTION_S)
        await send(harness, 2, conversation, "now")
        pruner = retention(harness)
        pruner.start()
        await harness.advance(0)
        pruner.stop()
        await harness.advance(CHECK_EVERY_MAX_S)
        assert pruner.pruned_events == PRUNE_BATCH
        assert await count(harness, "events") == PRUNE_BATCH + 1


# -- the long-poll ------------------------------------------------------------------------


async def test_a_cursor_older_than_the_log_keeps_is_told_to_resync_from_the_present(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(EVENT_LOG_RETENTION_S=str(RETENTION_S)) as harness:
        feed = rest_services(harness).feed
        conversation = await harness.conversation(1, 2)
        stale, _ = await answer(start_poll(feed, 1, None))
        await send(harness, 2, conversation, "missed")
        fresh, _ = await answer(start_poll(feed, 1, None))
        await harness.advance(RETENTION_S + 1)
        kept = await send(harness, 2, conversation, "kept")
        await run_until_idle(harness)

        with pytest.raises(CursorPruned) as pruned:
            await answer(start_poll(feed, 1, stale))
        assert pruned.value.position == kept
        # A cursor at the pruned edge lost nothing: answered as ever.
        position, events = await answer(start_poll(feed, 1, fresh))
        assert (position, [e.message_id for e in events]) == (kept, [kept])
        # and the cursor of the resync answer is a good one.
        poll = start_poll(feed, 1, pruned.value.position)
        later = await send(harness, 2, conversation, "later")
        position, events = await answer(poll)
        assert [e.message_id for e in events] == [later]
        assert feed.waiting == 0


# -- messages ---------------------------------------------------------------------------


async def old_message(harness: ServiceHarness, conversation: int, text: str, age_ms: int) -> int:
    result = await harness.storage.messages.store_message(
        conversation, 2, "user2", text, text, harness.now_ms - age_ms)
    return result.message.id


async def test_messages_are_kept_forever_by_default(make_harness: HarnessFactory) -> None:
    async with make_harness() as harness:
        conversation = await harness.conversation(1, 2)
        await old_message(harness, conversation, "ten years ago", 3650 * DAY_MS)
        await run_until_idle(harness)
        assert await count(harness, "messages") == 1


async def test_messages_past_message_retention_days_go_with_their_reactions(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MESSAGE_RETENTION_DAYS="2") as harness:
        conversation = await harness.conversation(1, 2)
        old = [await old_message(harness, conversation, f"old {n}", 3 * DAY_MS)
               for n in range(PRUNE_BATCH + 3)]
        young = await old_message(harness, conversation, "a day old", DAY_MS)
        for message_id in (old[0], old[-1], young):
            await harness.storage.reactions.toggle_reaction(message_id, 1, "👍", harness.now_ms)
        await run_until_idle(harness)
        assert retention(harness).pruned_messages == len(old)
        assert [m.id for m in await harness.storage.messages.messages_after(
            conversation, 0, 10
        )] == [young]
        assert await count(harness, "reactions") == 1
        assert await harness.storage.reactions.reactions(young) == [(1, "👍")]


async def test_the_long_poll_does_not_announce_a_deleted_message(
    make_harness: HarnessFactory,
) -> None:
    # (the event log kept longer than the message, as an operator may set it)
    async with make_harness(MESSAGE_RETENTION_DAYS="1", EVENT_LOG_RETENTION_S="259200") as harness:
        feed = rest_services(harness).feed
        conversation = await harness.conversation(1, 2)
        cursor, _ = await answer(start_poll(feed, 1, None))
        gone = await old_message(harness, conversation, "from long ago", 2 * DAY_MS)
        kept = await send(harness, 2, conversation, "today")
        await run_until_idle(harness)
        assert await count(harness, "messages", f"id = {gone}") == 0
        _, events = await answer(start_poll(feed, 1, cursor))
        assert [(e.kind, e.message_id) for e in events] == [("message", kept)]
