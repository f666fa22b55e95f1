"""The engine seam: what SqlStorage needs from a database driver, and nothing more.

SQL is written once with `?` placeholders; an engine adapts placeholders and the
few dialect differences (`dialect` tells which) and owns connections, transactions
and timeouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

Row = tuple[Any, ...]
Params = Sequence[Any]
Dialect = Literal["sqlite", "mysql"]


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

    async def close(self) -> None: ...
