"""The same constraints on both databases (migration 4): these unique keys, no
foreign keys; on a fresh database and on one created at version 3 and upgraded."""

from __future__ import annotations

import pytest

from ecigdis_ws.storage import schema
from ecigdis_ws.storage.base import Storage
from ecigdis_ws.storage.migrations import MIGRATIONS
from ecigdis_ws.storage.sql import SqlStorage
from tests.storage.conftest import OpenStorage, store_as_version_7

NOW_MS = 1_764_064_800_000

# Per table, the column lists the database refuses to hold twice (primary and unique keys).
UNIQUE_KEYS = {
    "users": {("id",)},
    "conversations": {("id",)},
    "members": {("conversation_id", "user_id")},
    "messages": {("id",), ("sender_id", "client_message_id")},
    "reactions": {("message_id", "user_id", "emoji")},
    "user_preferences": {("user_id", "pref_key")},
    "events": {("id",)},
    "schema_migrations": {("version",)},
}


async def _sqlite_unique_keys(storage: SqlStorage, table: str) -> set[tuple[str, ...]]:
    engine = storage.engine
    # An INTEGER PRIMARY KEY is the rowid and has no index: read it from the columns.
    columns = await engine.fetch_all(f"PRAGMA table_info('{table}')")
    keys = {tuple(str(c[1]) for c in sorted(columns, key=lambda c: c[5]) if c[5])}
    for index in await engine.fetch_all(f"PRAGMA index_list('{table}')"):
        if index[2]:
            parts = await engine.fetch_all(f"PRAGMA index_info('{index[1]}')")
            keys.add(tuple(str(part[2]) for part in sorted(parts)))
    return keys


async def _mariadb_unique_keys(storage: SqlStorage, table: str) -> set[tuple[str, ...]]:
    rows = await storage.engine.fetch_all(
        "SELECT index_name, column_name FROM information_schema.statistics "
        "WHERE table_schema = DATABASE() AND table_name = ? AND non_unique = 0 "
        "ORDER BY index_name, seq_in_index",
        (table,),
    )
    keys: dict[str, tuple[str, ...]] = {}
    for index, column in rows:
        keys[str(index)] = (*keys.get(str(index), ()), str(column))
    return set(keys.values())


async def _foreign_keys(storage: SqlStorage, table: str) -> list[object]:
    if storage.engine.dialect.name == "sqlite":
        return list(await storage.engine.fetch_all(f"PRAGMA foreign_key_list('{table}')"))
    return list(await storage.engine.fetch_all(
        "SELECT constraint_name FROM information_schema.referential_constraints "
        "WHERE constraint_schema = DATABASE() AND table_name = ?",
        (table,),
    ))


async def _constraints(storage: Storage) -> dict[str, tuple[set[tuple[str, ...]], list[object]]]:
    assert isinstance(storage, SqlStorage)
    unique_keys = (_sqlite_unique_keys if storage.engine.dialect.name == "sqlite"
                   else _mariadb_unique_keys)
    found = {}
    for table in UNIQUE_KEYS:
        name = storage.tables.prefix + table
        found[table] = (await unique_keys(storage, name), await _foreign_keys(storage, name))
    return found


EXPECTED = {table: (keys, []) for table, keys in UNIQUE_KEYS.items()}


async def test_a_fresh_database_has_the_unique_keys_and_no_foreign_keys(
    storage: Storage,
) -> None:
    assert await _constraints(storage) == EXPECTED


async def test_a_version_3_database_upgrades_to_the_same_constraints_keeping_its_rows(
    open_unmigrated: OpenStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as at_version_3:
        at_version_3.setattr(schema, "MIGRATIONS", MIGRATIONS[:3])
        old = await open_unmigrated()
        assert await old.migrate() == [1, 2, 3]
    conversation = await old.conversations.create_conversation("kept", [1, 2], NOW_MS)
    first, second, newest = [
        await store_as_version_7(old, conversation, 1, "Ann", f"m{n}", f"text {n}", NOW_MS)
        for n in range(3)
    ]
    await old.reactions.toggle_reaction(first.id, 2, "👍", NOW_MS)
    assert isinstance(old, SqlStorage)
    # (The read position as version 3's advance_read wrote it: no time column yet.)
    await old.engine.execute(
        f"UPDATE {old.tables.prefix}members SET last_read_message_id = ? "
        "WHERE conversation_id = ? AND user_id = ?", (second.id, conversation, "2"))
    await old.engine.execute(f"DELETE FROM {old.tables.prefix}messages WHERE id = ?",
                             (newest.id,))

    declared = sum(len(foreign) for _, foreign in (await _constraints(old)).values())
    assert declared == (3 if old.engine.dialect.name == "sqlite" else 0)  # the starting point

    assert await old.migrate() == [4, 5, 6, 7, 8]

    assert await _constraints(old) == EXPECTED
    assert await old.conversations.member_ids(conversation) == [1, 2]
    assert await old.messages.messages_after(conversation, 0, 10) == [first, second]
    assert await old.reactions.reactions(first.id) == [(2, "👍")]
    assert await old.receipts.last_read(conversation, 2) == second.id
    again = await old.messages.store_message(conversation, 1, "Ann", "m0", "text 0", NOW_MS)
    assert again.duplicate and again.message == first  # the unique key still holds
    after = await old.messages.store_message(conversation, 1, "Ann", "m9", "text 9", NOW_MS)
    assert after.message.id > newest.id  # the AUTOINCREMENT counter came along


async def test_both_databases_accept_a_member_of_a_conversation_without_a_row(
    storage: Storage,
) -> None:
    # No foreign keys on either: the services create the conversation row first
    # (ensure_conversation), and the database refuses the same writes on both.
    assert await storage.conversations.add_member(424242, 1, NOW_MS)
    assert await storage.conversations.member_ids(424242) == [1]
