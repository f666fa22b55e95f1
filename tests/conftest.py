from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from tests.support import RunningServer, running_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """The real server with default settings on a free loopback port."""
    async with running_server(tmp_path) as running:
        yield running


@pytest.fixture
def make_server(tmp_path: Path) -> Callable[..., AbstractAsyncContextManager[RunningServer]]:
    """Start a server with settings overridden as environment variables."""

    def start(**env: str) -> AbstractAsyncContextManager[RunningServer]:
        return running_server(tmp_path, **env)

    return start
