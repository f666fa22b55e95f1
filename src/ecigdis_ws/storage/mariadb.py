"""MariaDB engine (aiomysql): the production database, shared with the main site.

A pool of autocommit connections; a transaction takes one connection for its
whole life. Any connection that saw a connection-level error, or was cut off by
our deadline mid-statement, is closed instead of returned, so the pool never
hands out a dead or confused connection again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomysql
import pymysql

from ecigdis_ws.errors import StorageUnavailable
from ecigdis_ws.storage.dialects import MariaDbDialect
from ecigdis_ws.storage.engine import Cursorish, Dialect, Params, Row

# How long `migrate` waits for another process's migration to finish.
MIGRATION_LOCK_WAIT_S = 60
# Server error codes that mean "cannot reach the data now" rather than bad SQL:
# lock wait timeout, deadlock, too many connections, server shutting down, read-only.
_UNAVAILABLE_SERVER_ERRORS = {1040, 1053, 1205, 1213, 1290, 1836}
# What the usual refusals at connect time mean, so the message ends in the fix.
_CONNECT_HINTS = {
    1044: "the user has no rights on this database: GRANT ALL ON <database>.* TO the user "
          "(DEPLOYMENT_GUIDE.md section 3)",
    1045: "wrong user or password: check both in DATABASE_URL (percent-encode @ : / # % "
          "in the password, e.g. @ as %40), and that the account is for this client's "
          "host, e.g. 'ecigdis_ws'@'127.0.0.1' (DEPLOYMENT_GUIDE.md section 3)",
    1049: "the database does not exist: CREATE DATABASE it (DEPLOYMENT_GUIDE.md section 3)",
    2003: "is MariaDB running, and on the host and port in DATABASE_URL?",
}


@dataclass(frozen=True)
class MariaDbTarget:
    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def from_url(cls, url: str) -> MariaDbTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb") or not parts.hostname:
            raise ValueError("DATABASE_URL: expected mysql://user:password@host:3306/dbname")
        database = parts.path.lstrip("/")
        if not database:
            raise ValueError("DATABASE_URL: the database name is missing (…:3306/dbname)")
        return cls(
            host=parts.hostname,
            port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=unquote(database),
        )


@dataclass(frozen=True)
class PoolOptions:
    min_size: int
    max_size: int
    connect_timeout_s: float
    recycle_s: int


def _mysql(sql: str) -> str:
    # SQL is written with `?`; PyMySQL wants `%s` (and a literal % doubled).
    return sql.replace("%", "%%").replace("?", "%s")


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, pymysql.err.InterfaceError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, pymysql.err.OperationalError):
        code = exc.args[0] if exc.args else 0
        # 2000-2999 are client-side connection errors (can't connect, gone away, lost).
        return 2000 <= code < 3000 or code in _UNAVAILABLE_SERVER_ERRORS
    return False


class _Connection:
    def __init__(self, conn: aiomysql.Connection) -> None:
        self._conn = conn

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        async with self._conn.cursor() as cursor:
            await cursor.execute(_mysql(sql), tuple(params))
            row = await cursor.fetchone()
            return tuple(row) if row is not None else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._conn.cursor() as cursor:
            await cursor.execute(_mysql(sql), tuple(params))
            return [tuple(row) for row in await cursor.fetchall()]

    async def execute(self, sql: str, params: Params = ()) -> tuple[int, int | None]:
        async with self._conn.cursor() as cursor:
            await cursor.execute(_mysql(sql), tuple(params))
            return cursor.rowcount, cursor.lastrowid or None


class MariaDbEngine:
    dialect: Dialect = MariaDbDialect()

    def __init__(self, pool: aiomysql.Pool, timeout_s: float, lock_name: str) -> None:
        self._pool = pool
        self._timeout_s = timeout_s
        self._lock_name = lock_name

    @classmethod
    async def open(
        cls, url: str, timeout_s: float, pool: PoolOptions, table_prefix: str
    ) -> MariaDbEngine:
        target = MariaDbTarget.from_url(url)
        try:
            # aiomysql's connect_timeout bounds the TCP connect only, not the MySQL
            # handshake after it: a database that accepts and then never answers
            # would hang start-up for ever. So each connection opened here has the
            # connect timeout as its deadline too.
            async with asyncio.timeout(pool.connect_timeout_s * max(pool.min_size, 1)):
                created = await aiomysql.create_pool(
                    minsize=pool.min_size,
                    maxsize=pool.max_size,
                    pool_recycle=pool.recycle_s,
                    host=target.host,
                    port=target.port,
                    user=target.user,
                    password=target.password,
                    db=target.database,
                    connect_timeout=pool.connect_timeout_s,
                    charset="utf8mb4",
                    autocommit=True,
                )
        except TimeoutError as exc:
            raise StorageUnavailable(f"mariadb: no answer from {target.host}:{target.port}/"
                                     f"{target.database} within the connect timeout") from exc
        except (pymysql.err.MySQLError, OSError) as exc:
            code = exc.args[0] if isinstance(exc, pymysql.err.MySQLError) and exc.args else None
            hint = _CONNECT_HINTS.get(code) if isinstance(code, int) else None
            raise StorageUnavailable(f"mariadb: cannot connect to {target.host}:"
                                     f"{target.port}/{target.database}: {exc}"
                                     + (f" (hint: {hint})" if hint else "")) from exc
        return cls(created, timeout_s, f"{target.database}.{table_prefix}migrate")

    @asynccontextmanager
    async def _connection(self, bounded: bool = False) -> AsyncIterator[_Connection]:
        """One pooled connection within the deadline (the caller's when `bounded`:
        each asyncio.timeout costs a loop timer and two getpid() calls, and a
        transaction already has one); closed, not reused, on trouble."""
        try:
            if bounded:
                conn = await self._pool.acquire()
            else:
                async with asyncio.timeout(self._timeout_s):
                    conn = await self._pool.acquire()
        except TimeoutError as exc:
            raise StorageUnavailable("mariadb: no connection within the deadline") from exc
        except (pymysql.err.MySQLError, OSError) as exc:
            raise StorageUnavailable(f"mariadb: cannot connect: {exc}") from exc
        healthy = False
        try:
            yield _Connection(conn)
            healthy = True
        except BaseException as exc:
            healthy = not (_is_unavailable(exc) or isinstance(exc, asyncio.CancelledError))
            if _is_unavailable(exc):
                raise StorageUnavailable(f"mariadb: {exc}") from exc
            raise
        finally:
            if not healthy:
                conn.close()
            self._pool.release(conn)

    async def _run(self, sql: str, params: Params, how: str) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s), self._connection(bounded=True) as conn:
                return await getattr(conn, how)(sql, params)
        except TimeoutError as exc:
            raise StorageUnavailable("mariadb: timed out") from exc

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = await self._run(sql, params, "fetch_one")
        return row

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        rows: list[Row] = await self._run(sql, params, "fetch_all")
        return rows

    async def execute(self, sql: str, params: Params = ()) -> tuple[int, int | None]:
        result: tuple[int, int | None] = await self._run(sql, params, "execute")
        return result

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Cursorish]:
        try:
            # One deadline for the whole transaction, so a send answers within it.
            async with asyncio.timeout(self._timeout_s), self._connection(bounded=True) as conn:
                await conn.execute("BEGIN")
                try:
                    yield conn
                except BaseException:
                    await asyncio.shield(self._rollback(conn))
                    raise
                await conn.execute("COMMIT")
        except TimeoutError as exc:
            raise StorageUnavailable("mariadb: timed out") from exc

    @staticmethod
    async def _rollback(conn: _Connection) -> None:
        # If even ROLLBACK fails the connection is closed on the way out, which
        # rolls back just the same.
        with contextlib.suppress(pymysql.err.MySQLError, OSError):
            await conn.execute("ROLLBACK")

    def migration_lock(self) -> AbstractAsyncContextManager[Cursorish]:
        return self._migration_lock()

    @asynccontextmanager
    async def _migration_lock(self) -> AsyncIterator[Cursorish]:
        # DDL commits implicitly in MariaDB, so the named lock (not a transaction)
        # is what keeps two processes from migrating at once.
        async with self._connection() as conn:
            row = await conn.fetch_one("SELECT GET_LOCK(?, ?)",
                                       (self._lock_name, MIGRATION_LOCK_WAIT_S))
            if not row or row[0] != 1:
                raise StorageUnavailable("mariadb: another migration holds the lock")
            try:
                yield conn
            finally:
                await conn.fetch_one("SELECT RELEASE_LOCK(?)", (self._lock_name,))

    async def scrub(self) -> None:
        # InnoDB frees an erased row's space for reuse; its redo and undo logs and
        # the binary log are the operator's to bound (docs/security.md, Deletion).
        return None

    async def close(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()
