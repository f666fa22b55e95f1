"""History with its state: the reactions of a page of messages (one query per page,
each message's emoji in the order of first use) and every member's read position
with its time (migration 5); on both engines (conftest.BACKENDS)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from ecigdis_ws.domain import ReactionCount, ReadPosition
from ecigdis_ws.storage import schema
from ecigdis_ws.storage.base import Storage
from ecigdis_ws.storage.engine import Params, Row
from ecigdis_ws.storage.migrations import MIGRATIONS
from ecigdis_ws.storage.sql import SqlStorage
from tests.storage.conftest import OpenStorage, store_as_version_7

NOW_MS = 1_764_064_800_000  # 2025-11-25T10:00:00.000Z


async def messages(storage: Storage, conversation: int, count: int) -> list[int]:
    return [
        (await storage.messages.store_message(conversation, 1, "Ann", f"m{n}", f"text {n}", NOW_MS))
        .message.id
        for n in range(count)
    ]


class QueryCounter:
    """Counts the SELECTs the engine runs outside a transaction and inside one."""

    def __init__(self, storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
        assert isinstance(storage, SqlStorage)
        self.statements: list[str] = []
        engine = storage.engine
        fetch_all = engine.fetch_all

        async def counted(sql: str, params: Params = ()) -> list[Row]:
            self.statements.append(sql)
            return await fetch_all(sql, params)

        monkeypatch.setattr(engine, "fetch_all", counted)


async def test_reactions_of_a_page_come_per_message_in_the_order_of_first_use(
    storage: Storage,
) -> None:
    conversation = await storage.conversations.create_conversation("c", [1, 2, 3, 4], NOW_MS)
    first, second, bare = await messages(storage, conversation, 3)
    await storage.reactions.toggle_reaction(first, 3, "👍", NOW_MS + 1)
    await storage.reactions.toggle_reaction(first, 2, "🎉", NOW_MS + 2)
    await storage.reactions.toggle_reaction(first, 2, "👍", NOW_MS + 3)
    await storage.reactions.toggle_reaction(second, 4, "❤️", NOW_MS + 4)
    # Two in the same millisecond: by user id, as text ("10" < "4").
    await storage.reactions.toggle_reaction(second, 4, "😂", NOW_MS + 5)
    await storage.reactions.toggle_reaction(second, 10, "😂", NOW_MS + 5)

    reactions = await storage.reactions.reactions_of([first, second, bare])

    assert reactions == {
        first: (ReactionCount("👍", (3, 2)), ReactionCount("🎉", (2,))),
        second: (ReactionCount("❤️", (4,)), ReactionCount("😂", (10, 4))),
    }  # a message with none is absent
    assert await storage.reactions.reactions_of([]) == {}


async def test_an_emoji_taken_back_by_its_first_user_goes_by_its_earliest_reaction_still_on(
    storage: Storage,
) -> None:
    conversation = await storage.conversations.create_conversation("c", [1, 2, 3], NOW_MS)
    [message] = await messages(storage, conversation, 1)
    await storage.reactions.toggle_reaction(message, 2, "👍", NOW_MS + 1)
    await storage.reactions.toggle_reaction(message, 3, "🎉", NOW_MS + 2)
    await storage.reactions.toggle_reaction(message, 3, "👍", NOW_MS + 3)
    await storage.reactions.toggle_reaction(message, 2, "👍", NOW_MS + 4)  # taken back

    assert await storage.reactions.reactions_of([message]) == {
        message: (ReactionCount("🎉", (3,)), ReactionCount("👍", (3,))),
    }
    await storage.reactions.toggle_reaction(message, 3, "🎉", NOW_MS + 5)
    await storage.reactions.toggle_reaction(message, 3, "👍", NOW_MS + 6)
    assert await storage.reactions.reactions_of([message]) == {}


async def test_the_reactions_of_a_whole_page_are_one_query(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation = await storage.conversations.create_conversation("c", [1, 2], NOW_MS)
    ids = await messages(storage, conversation, 501)  # a REST page asks for limit + 1
    for message in ids[::50]:
        await storage.reactions.toggle_reaction(message, 2, "👍", NOW_MS)
    counter = QueryCounter(storage, monkeypatch)

    reactions = await storage.reactions.reactions_of(ids)

    assert len(counter.statements) == 1
    assert set(reactions) == set(ids[::50])
    assert await storage.reactions.reactions_of([]) == {}
    assert len(counter.statements) == 1  # an empty page asks nothing


async def test_read_positions_list_every_member_with_the_time_it_moved(
    storage: Storage,
) -> None:
    conversation = await storage.conversations.create_conversation("c", [1, 2, 3], NOW_MS)
    first, second = await messages(storage, conversation, 2)
    assert await storage.receipts.read_positions(conversation) == [
        ReadPosition(1, None, None), ReadPosition(2, None, None), ReadPosition(3, None, None),
    ]

    assert await storage.receipts.advance_read(conversation, 2, first, NOW_MS + 10)
    assert await storage.receipts.advance_read(conversation, 3, second, NOW_MS + 20)
    assert await storage.receipts.advance_read(conversation, 2, second, NOW_MS + 30)
    assert not await storage.receipts.advance_read(
        conversation, 2, first, NOW_MS + 40
    )  # never back

    assert await storage.receipts.read_positions(conversation) == [
        ReadPosition(1, None, None),
        ReadPosition(2, second, NOW_MS + 30),
        ReadPosition(3, second, NOW_MS + 20),
    ]
    assert await storage.receipts.read_positions(conversation + 1000) == []


async def test_events_for_a_poll_carry_their_messages_reactions_read_in_one_query(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation = await storage.conversations.create_conversation("c", [1, 2, 3], NOW_MS)
    first, second = await messages(storage, conversation, 2)
    await storage.reactions.toggle_reaction(first, 3, "👍", NOW_MS + 1)
    await storage.reactions.toggle_reaction(first, 2, "👍", NOW_MS + 2)
    await storage.receipts.advance_read(conversation, 2, second, NOW_MS + 3)
    counter = QueryCounter(storage, monkeypatch)

    events = await storage.events.events_for_user(
        1, 0, await storage.events.event_log_last_id(), 100
    )

    assert [(e.kind, e.message_id, e.reactions) for e in events] == [
        ("message", first, (ReactionCount("👍", (3, 2)),)),
        ("message", second, ()),
        ("reaction", first, ()),
        ("reaction", first, ()),
        ("read", second, ()),
    ]
    assert len(counter.statements) == 1  # the reactions; the events are read in a transaction
    assert events[0].wire()["data"]["reactions"] == [
        {"emoji": "👍", "count": 2, "userIds": [3, 2]},
    ]


async def _at_version_4(open_unmigrated: OpenStorage, monkeypatch: pytest.MonkeyPatch) -> Storage:
    with monkeypatch.context() as at_version_4:
        at_version_4.setattr(schema, "MIGRATIONS", MIGRATIONS[:4])
        old = await open_unmigrated()
        assert await old.migrate() == [1, 2, 3, 4]
    return old


async def _run(storage: Storage, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
    assert isinstance(storage, SqlStorage)
    async with storage.engine.transaction() as tx:
        for sql, params in statements:
            await tx.execute(storage.tables.sql(sql), params)


async def test_migration_5_dates_each_existing_read_position_from_the_event_log(
    open_unmigrated: OpenStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await _at_version_4(open_unmigrated, monkeypatch)
    conversation = await old.conversations.create_conversation("kept", [1, 2, 3, 4], NOW_MS)
    first, second = [
        (await store_as_version_7(old, conversation, 1, "Ann", f"m{n}", "text", NOW_MS)).id
        for n in range(2)
    ]
    move = ("UPDATE {p}members SET last_read_message_id = ? "
            "WHERE conversation_id = ? AND user_id = ?")
    log = ("INSERT INTO {p}events (conversation_id, kind, message_id, user_id, created_at_ms) "
           "VALUES (?, 'read', ?, ?, ?)")
    # As version 4 wrote them: the position, and a "read" event each time it moved.
    await _run(old, [
        (move, (second, conversation, "2")), (log, (conversation, first, "2", NOW_MS + 1)),
        (log, (conversation, second, "2", NOW_MS + 2)),
        (move, (first, conversation, "3")), (log, (conversation, first, "3", NOW_MS + 3)),
        # A position from before the event log (migration 3): no event to date it.
        (move, (first, conversation, "4")),
        # Another conversation's read of the same id dates nothing here.
        (log, (conversation + 1, first, "4", NOW_MS + 9)),
    ])

    assert (await old.migrate())[0] == 5  # (and what came after it)

    assert await old.receipts.read_positions(conversation) == [
        ReadPosition(1, None, None),
        ReadPosition(2, second, NOW_MS + 2),
        ReadPosition(3, first, NOW_MS + 3),
        ReadPosition(4, first, None),
    ]
    assert await old.migrate() == []
