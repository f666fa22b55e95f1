"""One dialect object per engine: the SQL that SQLite and MariaDB write differently."""

from __future__ import annotations

from collections.abc import Sequence

from ecigdis_ws.storage.engine import DialectName


class SqliteDialect:
    name: DialectName = "sqlite"
    # A bare SELECT 1 never touches the file; this reads it, on the reader connection.
    ping = "SELECT COUNT(*) FROM sqlite_master"
    table_exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"

    def insert_once(self, first_column: str) -> str:
        return "ON CONFLICT DO NOTHING"

    def upsert(self, key: str, updated: Sequence[str]) -> str:
        assignments = ", ".join(f"{column} = excluded.{column}" for column in updated)
        return f"ON CONFLICT ({key}) DO UPDATE SET {assignments}"

    def lock_for_update(self, select: str) -> str | None:
        return None  # BEGIN IMMEDIATE: the one writer holds the whole database already

    def erase_freed(self, on: bool) -> str | None:
        # Only around deletions: always on, zeroing what page splits free cost the
        # send path 29 µs of SQLite's time per message (benchmarks/budget.py).
        return f"PRAGMA secure_delete={'ON' if on else 'OFF'}"


class MariaDbDialect:
    name: DialectName = "mysql"
    # Names no table, so a LOCK TABLES held elsewhere cannot block the probe.
    ping = "SELECT 1"
    table_exists = ("SELECT 1 FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_name = ?")

    def insert_once(self, first_column: str) -> str:
        # INSERT IGNORE would also turn real errors (a value too long, a NULL)
        # into warnings; a no-op update of the existing row skips only the duplicate.
        return f"ON DUPLICATE KEY UPDATE {first_column} = {first_column}"

    def upsert(self, key: str, updated: Sequence[str]) -> str:
        assignments = ", ".join(f"{column} = VALUES({column})" for column in updated)
        return f"ON DUPLICATE KEY UPDATE {assignments}"

    def lock_for_update(self, select: str) -> str | None:
        # Autocommit connections in a pool: concurrent transactions really run
        # side by side, so a count that guards a write must lock what it read.
        return f"{select} FOR UPDATE"

    def erase_freed(self, on: bool) -> str | None:
        return None  # InnoDB reuses freed space; docs/security.md, "Deletion"
