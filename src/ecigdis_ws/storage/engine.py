"""The engine seam: what the SQL stores need from a database driver, and nothing more.

SQL is written once with `?` placeholders; an engine adapts placeholders and owns
connections, transactions and timeouts, and its `dialect` object writes the few
statements that differ between databases.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

Row = tuple[Any, ...]
Params = Sequence[Any]
DialectName = Literal["sqlite", "mysql"]


class Dialect(Protocol):
    """The SQL that differs between databases, so no store asks which one it runs on."""

    name: DialectName
    # A health probe that reads without taking (or waiting for) a write lock.
    ping: str
    # One `?`: the table name; a row when the table exists.
    table_exists: str

    def insert_once(self, first_column: str) -> str:
        """The clause after an INSERT that skips a row whose unique key exists
        (0 rows affected for it)."""

    def upsert(self, key: str, updated: Sequence[str]) -> str:
        """The clause after an INSERT that overwrites `updated` when `key` exists."""

    def lock_for_update(self, select: str) -> str | None:
        """`select` made to lock the rows it reads until the transaction ends, or
        None when the engine's transactions exclude each other already."""

    def erase_freed(self, on: bool) -> str | None:
        """The statement that makes what the connection deletes or overwrites from
        now on zeroed in the file (on) or left as free space (off), or None when
        the engine has no such switch."""


class Cursorish(Protocol):
    """What a statement run inside a transaction can be asked."""

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def execute(self, sql: str, params: Params = ()) -> tuple[int, int | None]:
        """Run one statement; return (rows affected, last inserted id)."""


class Engine(Cursorish, Protocol):
    dialect: Dialect

    def transaction(self) -> AbstractAsyncContextManager[Cursorish]:
        """Statements inside commit together or not at all; writes are serialised."""

    def migration_lock(self) -> AbstractAsyncContextManager[Cursorish]:
        """A transaction that also excludes other processes migrating the same database."""

    async def scrub(self) -> None:
        """After a deletion: leave no copy of what was deleted in the database's own
        files where the engine can see to it (SQLite: its write-ahead log)."""

    async def close(self) -> None: ...
