"""SQLite engine (aiosqlite): the embedded default.

One writer connection behind an asyncio lock (SQLite allows one writer at a time
anyway) and one reader connection; WAL lets the reader see only committed rows
while the writer works.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TypeVar

import aiosqlite

from ecigdis_ws.errors import StorageUnavailable
from ecigdis_ws.storage.dialects import SqliteDialect
from ecigdis_ws.storage.engine import Cursorish, Dialect, Params, Row

T = TypeVar("T")

# SQLite's own busy wait must give up a little before our deadline, so the driver
# reports "locked" instead of our timeout cancelling a statement mid-flight.
BUSY_TIMEOUT_SHARE = 0.9


# OperationalErrors that mean "cannot reach the data now", as opposed to bad SQL.
_UNAVAILABLE_MARKERS = ("locked", "busy", "unable to open", "disk i/o", "readonly", "full")


def _is_unavailable(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _UNAVAILABLE_MARKERS)


def sqlite_path(url: str) -> str:
    """`sqlite:///rel/path.db` is relative, `sqlite:////abs/path.db` absolute."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"DATABASE_URL={url!r}: expected sqlite:///path/to/file.db")
    return url[len(prefix):]


class _Connection:
    def __init__(self, conn: aiosqlite.Connection, timeout_s: float | None) -> None:
        """`timeout_s` None: each statement's caller bounds it (the writer's, whose
        transaction has one deadline for all its statements)."""
        self._conn = conn
        self._timeout_s = timeout_s

    async def _guard(self, work: Awaitable[T]) -> T:
        try:
            if self._timeout_s is None:
                return await work
            async with asyncio.timeout(self._timeout_s):
                return await work
        except TimeoutError as exc:
            raise StorageUnavailable("sqlite: timed out") from exc
        except sqlite3.OperationalError as exc:
            if not _is_unavailable(exc):
                raise  # a broken schema or query is a bug, not an outage
            raise StorageUnavailable(f"sqlite: {exc}") from exc

    # Each statement is one trip to aiosqlite's thread (aiosqlite's cursor API takes
    # three: execute, fetch, close); under load every trip costs a thread wake-up
    # on each side, and the trips, not SQLite, were the writer's cost.

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        rows = await self._guard(self._conn.execute_fetchall(sql, tuple(params)))
        return [tuple(row) for row in rows]

    async def execute(self, sql: str, params: Params = ()) -> tuple[int, int | None]:
        # aiosqlite's `_execute` (its one primitive) runs our function in its thread.
        return await self._guard(
            self._conn._execute(  # type: ignore[no-untyped-call]
                _run_statement, self._conn._conn, sql, tuple(params)
            )
        )


def _run_statement(raw: sqlite3.Connection, sql: str, params: Params) -> tuple[int, int | None]:
    cursor = raw.execute(sql, params)
    try:
        return cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class SqliteEngine:
    dialect: Dialect = SqliteDialect()

    def __init__(
        self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, timeout_s: float
    ) -> None:
        # One deadline per write transaction, not one per statement: each
        # asyncio.timeout costs a loop timer and two getpid() calls, and a batch of
        # sends is five statements.
        self._writer = _Connection(writer, None)
        self._reader = _Connection(reader, timeout_s)
        self._raw = (writer, reader)
        self._write_lock = asyncio.Lock()
        self._timeout_s = timeout_s
        # The checkpoint that has not yet begun: deletions committed before it
        # begins are all covered by it, so they wait for the same one.
        self._next_checkpoint: asyncio.Future[None] | None = None

    @classmethod
    async def open(cls, url: str, timeout_s: float) -> SqliteEngine:
        path = sqlite_path(url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        busy = timeout_s * BUSY_TIMEOUT_SHARE
        writer = await aiosqlite.connect(path, timeout=busy, isolation_level=None)
        reader = await aiosqlite.connect(path, timeout=busy, isolation_level=None)
        engine = cls(writer, reader, timeout_s)
        try:
            await engine._writer.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across application crashes in WAL mode; only an OS
            # crash may lose the last commits, which FULL would cost fsyncs to avoid.
            await engine._writer.execute("PRAGMA synchronous=NORMAL")
            # Since migration 4 no table declares a foreign key (docs/storage.md,
            # Constraints); a database not yet migrated keeps its checks until then.
            await engine._writer.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            await engine.close()
            raise
        return engine

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        return await self._reader.fetch_one(sql, params)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._reader.fetch_all(sql, params)

    async def execute(self, sql: str, params: Params = ()) -> tuple[int, int | None]:
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Cursorish]:
        """One deadline (DB_TIMEOUT_MS) for taking the writer and every statement."""
        locked = False
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._write_lock.acquire()
                locked = True
                # A statement whose caller timed out still runs later in aiosqlite's
                # thread: a BEGIN abandoned that way would leave the connection in a
                # transaction nobody owns. The ROLLBACK queued behind it (the thread
                # runs in order) undoes whatever of this transaction did run.
                try:
                    await self._writer.execute("BEGIN IMMEDIATE")
                    yield self._writer
                    await self._writer.execute("COMMIT")
                except BaseException:
                    await asyncio.shield(self._rollback())
                    raise
        except TimeoutError as exc:
            raise StorageUnavailable(
                "sqlite: timed out" if locked else "sqlite: writer busy"
            ) from exc
        finally:
            if locked:
                self._write_lock.release()

    async def _rollback(self) -> None:
        # Failing here means no transaction was left to roll back. Bounded on its
        # own: behind a statement that outlived the deadline it would wait for that
        # statement, holding the writer; given up, it stays queued and still runs.
        with contextlib.suppress(StorageUnavailable, sqlite3.OperationalError, TimeoutError):
            async with asyncio.timeout(self._timeout_s):
                await self._writer.execute("ROLLBACK")

    def migration_lock(self) -> AbstractAsyncContextManager[Cursorish]:
        # BEGIN IMMEDIATE already excludes every other process's writers.
        return self.transaction()

    async def scrub(self) -> None:
        """The write-ahead log still holds the pages as they were before a deletion
        until a checkpoint copies them back: one that truncates the log, so the
        deleted text is left in neither file. Readers in the middle of a read make
        it wait (within the busy timeout); one that cannot finish leaves the rest to
        the next deletion's, or SQLite's own checkpoints."""
        pending = self._next_checkpoint
        if pending is None:
            pending = self._next_checkpoint = asyncio.ensure_future(self._checkpoint())
        # (shielded: one caller giving up does not cancel the others' checkpoint)
        await asyncio.shield(pending)

    async def _checkpoint(self) -> None:
        # (a checkpoint that fails is the next one's to finish: the deletion itself
        # committed, and its caller is not told it failed)
        with contextlib.suppress(StorageUnavailable, sqlite3.OperationalError, TimeoutError):
            async with asyncio.timeout(self._timeout_s):
                async with self._write_lock:
                    # Begun: a deletion committed from now on needs the next one.
                    self._next_checkpoint = None
                    await self._writer.fetch_one("PRAGMA wal_checkpoint(TRUNCATE)")
        if self._next_checkpoint is asyncio.current_task():
            self._next_checkpoint = None  # (timed out waiting for the writer)

    async def close(self) -> None:
        for conn in self._raw:
            await conn.close()
