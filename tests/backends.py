"""Database backends under test: the embedded SQLite file and a real MariaDB.

MariaDB comes from TEST_MARIADB_URL (default mysql://root@127.0.0.1:3306/test):
each test run creates its own database with a random name there and drops it at
the end; each test gets its own table prefix inside it, so tests never share rows.
Without a reachable MariaDB the MariaDB variants skip with a message saying how to
enable them, except under CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pymysql
import pytest

from ecigdis_ws.storage.mariadb import MariaDbTarget
from tests import needs

BACKENDS = ("sqlite", "mariadb")
DEFAULT_MARIADB_URL = "mysql://root@127.0.0.1:3306/test"
_prefixes = itertools.count(1)


def mariadb_server_url() -> str:
    return os.environ.get("TEST_MARIADB_URL", DEFAULT_MARIADB_URL)


def connect(url: str, database: str | None = None) -> pymysql.connections.Connection:
    target = MariaDbTarget.from_url(url)
    return pymysql.connect(
        host=target.host, port=target.port, user=target.user, password=target.password,
        database=database, charset="utf8mb4", autocommit=True, connect_timeout=3,
    )


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, "", ""))


def unavailable(reason: str) -> None:
    message = (f"MariaDB not reachable ({reason}); start it (start-stop-daemon --start "
               "--oknodo --background --exec /usr/sbin/mariadbd) or set TEST_MARIADB_URL")
    needs.unavailable(message)


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A fresh database for this test run on the MariaDB server; dropped afterwards."""
    server_url = mariadb_server_url()
    try:
        admin = connect(server_url)
    except pymysql.err.MySQLError as exc:
        unavailable(str(exc))
    name = f"ecigdis_test_{secrets.token_hex(4)}"
    with admin.cursor() as cursor:
        cursor.execute(
            f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
    try:
        yield with_database(server_url, name)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def unique_prefix() -> str:
    """A table prefix no other test in this run uses."""
    return f"t{next(_prefixes)}_{secrets.token_hex(2)}_"


def database_env(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment that points a server or storage at this test's own tables."""
    if backend == "sqlite":
        return {}
    url: str = request.getfixturevalue("mariadb_url")
    return {"DATABASE_URL": url, "DB_TABLE_PREFIX": unique_prefix()}
