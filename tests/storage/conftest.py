"""Storage fixtures, one parameter per backend.

Every test in this package runs once per name in `BACKENDS`. A backend is a way
to get Settings for a fresh, empty database plus a way for another connection to
hold that database's write lock. A later MariaDB backend adds one entry here
(and is skipped where its server is not available); the tests do not change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from ecigdis_ws.settings import Settings, load_settings
from ecigdis_ws.storage.base import Storage
from ecigdis_ws.storage.factory import open_storage


@dataclass(frozen=True)
class Backend:
    """One storage backend under test, bound to one fresh database."""

    name: str
    # Settings for this test's database, with extra environment variables applied.
    settings: Callable[..., Settings]
    # While entered, another connection holds the database's write lock.
    hold_write_lock: Callable[[], AbstractContextManager[None]]


def _sqlite_backend(tmp_path: Path) -> Backend:
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


BACKENDS: dict[str, Callable[[Path], Backend]] = {"sqlite": _sqlite_backend}

OpenStorage = Callable[..., Awaitable[Storage]]


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    name: str = request.param
    return BACKENDS[name](tmp_path)


@pytest.fixture
async def open_unmigrated(backend: Backend) -> AsyncIterator[OpenStorage]:
    """Open storage instances (not migrated) on this test's database; all closed after."""
    opened: list[Storage] = []

    async def open_one(**env: str) -> Storage:
        storage = await open_storage(backend.settings(**env))
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
