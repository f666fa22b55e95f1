"""The schema's versions (migrate, pending_migrations) and the health probe."""

from __future__ import annotations

import time

from ecigdis_ws.storage.engine import Cursorish
from ecigdis_ws.storage.migrations import MIGRATIONS
from ecigdis_ws.storage.tables import Tables


class SchemaStore:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables
        self._engine = tables.engine

    async def migrate(self) -> list[int]:
        applied_now: list[int] = []
        async with self._engine.migration_lock() as tx:
            await self._ensure_migrations_table(tx)
            done = await self._applied(tx)
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                for statement in migration.statements(
                    self._engine.dialect.name, self._tables.prefix
                ):
                    await tx.execute(statement)
                await tx.execute(
                    self._tables.sql("INSERT INTO {p}schema_migrations VALUES (?, ?, ?)"),
                    (migration.version, migration.name, int(time.time() * 1000)),
                )
                applied_now.append(migration.version)
        return applied_now

    async def pending_migrations(self) -> list[int]:
        async with self._engine.transaction() as tx:
            await self._ensure_migrations_table(tx)
            done = await self._applied(tx)
        return [m.version for m in MIGRATIONS if m.version not in done]

    async def ping(self) -> None:
        # Outside any write transaction (SQLite: the reader connection; MariaDB: a
        # pooled autocommit connection): a probe neither takes nor waits for the
        # writer's lock, so flooding the public /health cannot slow sends (it took
        # a BEGIN IMMEDIATE per request). Bounded by DB_TIMEOUT_MS like every read.
        await self._engine.fetch_one(self._engine.dialect.ping)

    async def _ensure_migrations_table(self, tx: Cursorish) -> None:
        table = f"{self._tables.prefix}schema_migrations"
        if await tx.fetch_one(self._engine.dialect.table_exists, (table,)) is not None:
            return  # (IF NOT EXISTS alone would make MariaDB warn on every run)
        await tx.execute(self._tables.sql(
            "CREATE TABLE IF NOT EXISTS {p}schema_migrations ("
            "version INTEGER NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, "
            "applied_at_ms BIGINT NOT NULL)"
        ))

    async def _applied(self, tx: Cursorish) -> set[int]:
        rows = await tx.fetch_all(self._tables.sql("SELECT version FROM {p}schema_migrations"))
        return {int(row[0]) for row in rows}
