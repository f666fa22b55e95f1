"""Each engine's dialect object writes SQL its own database runs with the same effect."""

from __future__ import annotations

from ecigdis_ws.storage.base import Storage
from ecigdis_ws.storage.sql import SqlStorage

NOW_MS = 1_764_064_800_000


def _sql_storage(storage: Storage) -> SqlStorage:
    assert isinstance(storage, SqlStorage)
    return storage


async def test_upsert_overwrites_only_the_named_columns(storage: Storage) -> None:
    engine = _sql_storage(storage).engine
    prefix = engine.dialect.upsert("id", ["name"])
    table = _sql_storage(storage).tables.prefix + "users"
    insert = f"INSERT INTO {table} (id, name, created_at_ms) VALUES (?, ?, ?) {prefix}"
    await engine.execute(insert, ("7", "first", NOW_MS))
    await engine.execute(insert, ("7", "second", NOW_MS + 1))
    row = await engine.fetch_one(f"SELECT name, created_at_ms FROM {table} WHERE id = ?", ("7",))
    assert row == ("second", NOW_MS)


async def test_insert_once_skips_an_existing_key_with_zero_rows_affected(
    storage: Storage,
) -> None:
    sql = _sql_storage(storage)
    conversation = await sql.conversations.create_conversation("c", [], NOW_MS)
    insert = sql.tables.insert_once("members", "conversation_id, user_id, joined_at_ms")
    assert (await sql.engine.execute(insert, (conversation, "1", NOW_MS)))[0] == 1
    assert (await sql.engine.execute(insert, (conversation, "1", NOW_MS + 1)))[0] == 0
    assert await sql.conversations.member_ids(conversation) == [1]


async def test_lock_for_update_runs_inside_a_transaction_or_is_not_needed(
    storage: Storage,
) -> None:
    sql = _sql_storage(storage)
    conversation = await sql.conversations.create_conversation("c", [], NOW_MS)
    select = f"SELECT id FROM {sql.tables.prefix}conversations WHERE id = ?"
    locking = sql.engine.dialect.lock_for_update(select)
    if sql.engine.dialect.name == "sqlite":
        assert locking is None  # BEGIN IMMEDIATE excludes every other writer already
        return
    assert locking is not None
    async with sql.engine.transaction() as tx:
        assert await tx.fetch_one(locking, (conversation,)) == (conversation,)


async def test_table_exists_finds_a_table_and_not_a_missing_one(storage: Storage) -> None:
    sql = _sql_storage(storage)
    prefix = sql.tables.prefix
    exists = sql.engine.dialect.table_exists
    assert await sql.engine.fetch_one(exists, (f"{prefix}messages",)) is not None
    assert await sql.engine.fetch_one(exists, (f"{prefix}no_such_table",)) is None
