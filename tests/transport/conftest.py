from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest

from tests.support import WAIT_S, ChatClient, RunningServer
from tests.transport.rest_support import SERVER_API_KEY, Rest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for the test's requests (REST, polling, raw websockets)."""
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
async def keyed(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
    session: aiohttp.ClientSession,
) -> AsyncIterator[Rest]:
    """REST against a server with the server API on (API_KEY=SERVER_API_KEY)."""
    async with make_server(API_KEY=SERVER_API_KEY) as server:
        yield Rest(server, session)


async def room(server: RunningServer, *users: int) -> tuple[int, list[ChatClient]]:
    """A conversation of `users`, each connected and joined."""
    conversation = await server.conversation(*users)
    clients = []
    for user in users:
        client = await server.client(user, f"user{user}")
        assert (await client.call("conversation:join", {"conversationId": conversation}))["ok"]
        clients.append(client)
    return conversation, clients


# -- raw websockets, for what a Socket.IO client library would never send -----------


async def raw_websocket(
    server: RunningServer, http: aiohttp.ClientSession
) -> aiohttp.ClientWebSocketResponse:
    """An Engine.IO websocket that has had its OPEN packet and says nothing more."""
    ws = await http.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket")
    assert (await ws.receive_str(timeout=WAIT_S)).startswith("0{")
    return ws


async def socketio_connected(
    server: RunningServer, http: aiohttp.ClientSession, token: str | None = None
) -> aiohttp.ClientWebSocketResponse:
    """A raw websocket whose Socket.IO CONNECT (with `token`, if any) was answered."""
    ws = await raw_websocket(server, http)
    await ws.send_str("40" + (json.dumps({"token": token}) if token else ""))
    assert (await ws.receive_str(timeout=WAIT_S)).startswith("40{")
    return ws


async def frames_until_closed(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
    """The text frames the server sends until it closes the websocket."""
    frames = []
    while True:
        message = await ws.receive(timeout=WAIT_S)
        if message.type is not aiohttp.WSMsgType.TEXT:
            return frames
        frames.append(message.data)
