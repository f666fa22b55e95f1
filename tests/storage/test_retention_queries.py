"""The retention statements on both databases: bounded batches, the newest event
kept, the pruned mark only raised, and two nodes pruning the same rows at once
deleting each once, with no deadlock and no error."""

from __future__ import annotations

import asyncio

from ecigdis_ws.storage.base import Storage
from ecigdis_ws.storage.sql import SqlStorage
from tests.storage.conftest import OpenStorage

NOW_MS = 1_800_000_000_000
OLD_MS = NOW_MS - 3_600_000


async def log_events(storage: Storage, rows: int, at_ms: int) -> None:
    assert isinstance(storage, SqlStorage)
    for start in range(0, rows, 500):
        chunk = min(500, rows - start)
        await storage.engine.execute(
            f"INSERT INTO {storage.tables.prefix}events (conversation_id, kind, message_id, "
            f"user_id, created_at_ms) VALUES {', '.join('(1, ?, ?, ?, ?)' for _ in range(chunk))}",
            [v for n in range(chunk) for v in ("read", start + n + 1, "1", at_ms)],
        )


async def events(storage: Storage) -> list[int]:
    assert isinstance(storage, SqlStorage)
    rows = await storage.engine.fetch_all(
        f"SELECT id FROM {storage.tables.prefix}events ORDER BY id")
    return [int(row[0]) for row in rows]


async def test_a_batch_deletes_at_most_its_size_the_oldest_first(storage: Storage) -> None:
    await log_events(storage, 25, OLD_MS)
    await log_events(storage, 2, NOW_MS)
    ids = await events(storage)
    assert await storage.events.prune_event_log(NOW_MS - 1000, 10) == 10
    assert await events(storage) == ids[10:]
    assert await storage.events.event_log_pruned_through() == ids[9]
    assert await storage.events.prune_event_log(NOW_MS - 1000, 10) == 10
    assert await storage.events.prune_event_log(NOW_MS - 1000, 10) == 5  # up to the cutoff only
    assert await storage.events.prune_event_log(NOW_MS - 1000, 10) == 0
    assert await events(storage) == ids[25:]
    assert await storage.events.event_log_pruned_through() == ids[24]


async def test_the_newest_event_stays_and_an_empty_log_prunes_nothing(storage: Storage) -> None:
    assert await storage.events.prune_event_log(NOW_MS, 10) == 0
    assert await storage.events.event_log_pruned_through() == 0
    await log_events(storage, 3, OLD_MS)
    ids = await events(storage)
    assert await storage.events.prune_event_log(NOW_MS, 10) == 2
    assert await events(storage) == ids[2:]
    assert await storage.events.event_log_last_id() == ids[2]
    assert await storage.events.prune_event_log(NOW_MS, 10) == 0


async def test_two_nodes_pruning_at_once_delete_each_row_once(
    storage: Storage, open_unmigrated: OpenStorage,
) -> None:
    other_node = await open_unmigrated()
    await log_events(storage, 3000, OLD_MS)
    await log_events(storage, 1, NOW_MS)
    *_, last_old, newest = await events(storage)

    async def prune_all(node: Storage) -> int:
        total = 0
        while deleted := await node.events.prune_event_log(NOW_MS - 1000, 100):
            total += deleted
            await asyncio.sleep(0)
        return total

    totals = await asyncio.gather(prune_all(storage), prune_all(other_node))
    assert sum(totals) == 3000
    assert await events(storage) == [newest]
    assert await other_node.events.event_log_pruned_through() == last_old


async def test_messages_go_oldest_first_up_to_the_first_one_kept(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("t", [1, 2], NOW_MS)
    old = [(await storage.messages.store_message(
        conversation, 1, "a", f"o{n}", "old", OLD_MS
    )).message.id
           for n in range(5)]
    young = (await storage.messages.store_message(
        conversation, 1, "a", "y", "young", NOW_MS
    )).message.id
    # One older than the cutoff after a young one (clock skew) stays: the run stops.
    late = (await storage.messages.store_message(
        conversation, 1, "a", "l", "late", OLD_MS
    )).message.id
    for message_id in (*old, young):
        await storage.reactions.toggle_reaction(message_id, 2, "👍", NOW_MS)
    assert await storage.messages.prune_messages(NOW_MS - 1000, 3) == 3
    assert await storage.messages.prune_messages(NOW_MS - 1000, 3) == 2
    assert await storage.messages.prune_messages(NOW_MS - 1000, 3) == 0
    kept = await storage.messages.messages_after(conversation, 0, 10)
    assert [m.id for m in kept] == [young, late]
    assert [await storage.reactions.reactions(m) for m in (*old, young)] == [[]] * 5 + [[(2, "👍")]]
