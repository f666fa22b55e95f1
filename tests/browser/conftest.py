"""Session fixtures of the browser tests: Chromium, playwright-core and the client bundle,
each installed or built once; and per test a browser and a development server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser.support import (
    Browser,
    ChatServer,
    build_client,
    chromium,
    launch,
    node,
    playwright_core,
    server_env,
)


@dataclass(frozen=True)
class Tools:
    node: str
    chromium: str
    playwright: Path


@pytest.fixture(scope="session")
def built_client() -> str:
    """`make client` done (client/node_modules and the bundle); returns node's path."""
    node_path = node()
    build_client()
    return node_path


@pytest.fixture(scope="session")
def tools(built_client: str) -> Tools:
    """Node, Debian's Chromium, playwright-core and a built ChatManager bundle."""
    return Tools(built_client, chromium(), playwright_core())


@pytest.fixture
async def browser(tools: Tools) -> AsyncIterator[Browser]:
    async with launch(tools.node, tools.chromium, tools.playwright) as running:
        yield running


@pytest.fixture
def chat_server(tmp_path: Path, tools: Tools) -> Iterator[ChatServer]:
    """A development server (NODE_ENV=development: demo page and /dev/token) on a
    free port and its own SQLite file; started by the test, stopped afterwards."""
    server = ChatServer(tmp_path, server_env(tmp_path))
    try:
        yield server
    finally:
        server.stop()
