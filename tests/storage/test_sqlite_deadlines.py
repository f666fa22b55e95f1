"""SQLite statements that outlive their deadline still run in aiosqlite's thread;
the engine must not be left in a transaction that nobody owns."""

from __future__ import annotations

import asyncio
import time

import pytest

from ecigdis_ws.errors import StorageUnavailable
from ecigdis_ws.storage.sql import SqlStorage
from tests.storage.conftest import OpenStorage

pytestmark = pytest.mark.backends("sqlite")

# Counts to ten million: seconds of work for the writer thread, far past 200 ms.
SLOW_STATEMENT = (
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10000000) "
    "SELECT count(*) FROM n"
)


async def test_a_begin_abandoned_at_its_deadline_leaves_the_writer_usable(
    open_unmigrated: OpenStorage,
) -> None:
    storage = await open_unmigrated(DB_TIMEOUT_MS="200")
    await storage.migrate()
    assert isinstance(storage, SqlStorage)
    engine = storage.engine
    with pytest.raises(StorageUnavailable):  # keeps the writer thread busy for seconds
        async with engine.transaction() as tx:
            await tx.fetch_one(SLOW_STATEMENT)
    with pytest.raises(StorageUnavailable):  # its BEGIN is queued behind, and abandoned
        async with engine.transaction() as tx:
            await tx.fetch_one("SELECT 1")
    started = time.monotonic()
    while True:  # once the thread has worked through its queue, writes work again
        try:
            conversation = await storage.conversations.create_conversation("after", [1], 0)
            break
        except StorageUnavailable:
            assert time.monotonic() - started < 60, "the writer never recovered"
            await asyncio.sleep(0.2)
    assert await storage.conversations.is_member(conversation, 1)
