from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import engineio.payload
import pytest

from tests.backends import BACKENDS, database_env, mariadb_url
from tests.support import RunningServer, running_server

__all__ = ["mariadb_url"]

# The tests' own python-engineio clients refuse a polling response of more than 16
# packets ("Unexpected packet from server"), which the server sends whenever that
# many events queued for a socket between two polls, as the Node server does;
# socket.io-client reads any number, so these clients do too. The server decodes
# with its own subclass (transport/socketio_overrides/polling.py), unchanged by this.
engineio.payload.Payload.max_decode_packets = 10_000


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): run only against these database backends"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that starts a server or opens storage runs once per backend,
    unless it is marked `backends(...)` (a fault that only one backend can show)."""
    if "backend_name" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("backends")
        names = marker.args if marker else BACKENDS
        metafunc.parametrize("backend_name", names)


@pytest.fixture
def db_env(backend_name: str, request: pytest.FixtureRequest) -> dict[str, str]:
    return database_env(backend_name, request)


@pytest.fixture
async def server(tmp_path: Path, db_env: dict[str, str]) -> AsyncIterator[RunningServer]:
    """The real server with default settings on a free loopback port."""
    async with running_server(tmp_path, **db_env) as running:
        yield running


@pytest.fixture
def make_server(
    tmp_path: Path, db_env: dict[str, str]
) -> Callable[..., AbstractAsyncContextManager[RunningServer]]:
    """Start a server with settings overridden as environment variables."""

    def start(**env: str) -> AbstractAsyncContextManager[RunningServer]:
        return running_server(tmp_path, **{**db_env, **env})

    return start
