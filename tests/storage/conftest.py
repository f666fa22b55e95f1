"""Storage fixtures, one parameter per backend.

Every test in this package runs once per name in `BACKENDS`. A backend is a way
to get Settings for a fresh, empty database plus a way for another connection to
hold that database's write lock. MariaDB tables live in this run's own
database (tests/backends.py), under a table prefix of the test's own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from ecigdis_ws.clock import Clock, ManualClock
from ecigdis_ws.domain import StoredMessage
from ecigdis_ws.settings import Settings, load_settings
from ecigdis_ws.storage.base import Storage
from ecigdis_ws.storage.factory import open_storage
from ecigdis_ws.storage.mariadb import MariaDbTarget
from ecigdis_ws.storage.sql import SqlStorage
from tests.backends import connect, database_env


@dataclass(frozen=True)
class Backend:
    """One storage backend under test, bound to one fresh database."""

    name: str
    # Settings for this test's database, with extra environment variables applied.
    settings: Callable[..., Settings]
    # While entered, another connection holds the database's write lock.
    hold_write_lock: Callable[[], AbstractContextManager[None]]


def _sqlite_backend(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    path = tmp_path / "storage.db"

    def settings(**env: str) -> Settings:
        base = {"NODE_ENV": "test", "DATABASE_URL": f"sqlite:///{path}"}
        base.update(env)
        return load_settings(base, dotenv_path=None)

    @contextmanager
    def hold_write_lock() -> Iterator[None]:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    return Backend("sqlite", settings, hold_write_lock)


def _mariadb_backend(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    env = database_env("mariadb", request)
    prefix = env["DB_TABLE_PREFIX"]

    def settings(**extra: str) -> Settings:
        return load_settings({"NODE_ENV": "test", **env, **extra}, dotenv_path=None)

    @contextmanager
    def hold_write_lock() -> Iterator[None]:
        conn = connect(env["DATABASE_URL"], MariaDbTarget.from_url(env["DATABASE_URL"]).database)
        try:
            with conn.cursor() as cursor:
                cursor.execute(f"LOCK TABLES {prefix}messages WRITE")
                yield
                cursor.execute("UNLOCK TABLES")
        finally:
            conn.close()

    return Backend("mariadb", settings, hold_write_lock)


BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], Backend]] = {
    "sqlite": _sqlite_backend,
    "mariadb": _mariadb_backend,
}

OpenStorage = Callable[..., Awaitable[Storage]]


@pytest.fixture
def backend(backend_name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[backend_name](tmp_path, request)


@pytest.fixture
async def open_unmigrated(backend: Backend) -> AsyncIterator[OpenStorage]:
    """Open storage instances (not migrated) on this test's database; all closed after."""
    opened: list[Storage] = []

    async def open_one(clock: Clock | None = None, **env: str) -> Storage:
        storage = await open_storage(backend.settings(**env), clock)
        opened.append(storage)
        return storage

    yield open_one
    for storage in opened:
        await storage.close()


@pytest.fixture
async def storage(open_unmigrated: OpenStorage) -> Storage:
    """Migrated storage on a fresh database, with default settings."""
    opened = await open_unmigrated()
    await opened.migrate()
    return opened


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def storage_on_clock(open_unmigrated: OpenStorage, clock: ManualClock) -> Storage:
    """Migrated storage whose write deadlines are kept on `clock` (the test moves it)."""
    opened = await open_unmigrated(clock)
    await opened.migrate()
    return opened


async def store_as_version_7(
    storage: Storage, conversation: int, sender: int, name: str, client_id: str, text: str,
    now_ms: int,
) -> StoredMessage:
    """A message written as the schema before migration 8 held it (no edit, reply or
    mention columns yet), with its event-log row: how an upgrade test starts. The
    message as it reads back after the upgrade."""
    assert isinstance(storage, SqlStorage)
    prefix = storage.tables.prefix
    async with storage.engine.transaction() as tx:
        _, message_id = await tx.execute(
            f"INSERT INTO {prefix}messages (conversation_id, sender_id, sender_name, "
            "client_message_id, text, created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
            (conversation, str(sender), name, client_id, text, now_ms),
        )
        assert message_id is not None
        await tx.execute(
            f"INSERT INTO {prefix}events (conversation_id, kind, message_id, user_id, "
            "created_at_ms) VALUES (?, 'message', ?, ?, ?)",
            (conversation, message_id, str(sender), now_ms),
        )
    return StoredMessage(message_id, conversation, sender, name, client_id, text, now_ms)
