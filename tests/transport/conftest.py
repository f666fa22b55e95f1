from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support import ChatClient, RunningServer


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for the test's requests (REST, polling, raw websockets)."""
    async with aiohttp.ClientSession() as http:
        yield http


async def room(server: RunningServer, *users: int) -> tuple[int, list[ChatClient]]:
    """A conversation of `users`, each connected and joined."""
    conversation = await server.conversation(*users)
    clients = []
    for user in users:
        client = await server.client(user, f"user{user}")
        assert (await client.call("conversation:join", {"conversationId": conversation}))["ok"]
        clients.append(client)
    return conversation, clients
