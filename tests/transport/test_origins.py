"""CORS_ORIGINS: an exact allowlist for polling and the websocket upgrade alike."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest
import socketio

from tests.support import ChatClient, RunningServer

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]
PORTAL = "https://portal.example"
POLL = "/socket.io/?EIO=4&transport=polling"
UPGRADE = "/socket.io/?EIO=4&transport=websocket"


async def status_of(server: RunningServer, path: str, origin: str | None) -> int:
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession() as http:
        if "websocket" in path:
            try:
                async with http.ws_connect(server.url + path, headers=headers) as ws:
                    await ws.close()
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
        async with http.get(server.url + path, headers=headers) as response:
            return response.status


@pytest.mark.parametrize("path", [POLL, UPGRADE], ids=["polling", "websocket"])
async def test_listed_origin_and_native_clients_are_allowed(
    make_server: ServerFactory, path: str
) -> None:
    async with make_server(CORS_ORIGINS=f"{PORTAL},https://other.example") as server:
        assert await status_of(server, path, PORTAL) in (200, 101)
        assert await status_of(server, path, None) in (200, 101)


@pytest.mark.parametrize("path", [POLL, UPGRADE], ids=["polling", "websocket"])
async def test_foreign_origin_gets_403_and_no_session(
    make_server: ServerFactory, path: str
) -> None:
    async with make_server(CORS_ORIGINS=PORTAL) as server:
        for origin in ("https://evil.example", "https://portal.example.evil", "null"):
            assert await status_of(server, path, origin) == 403
        assert server.chat.sessions.count == 0


async def test_a_socket_io_client_from_a_foreign_origin_cannot_connect(
    make_server: ServerFactory,
) -> None:
    async with make_server(CORS_ORIGINS=PORTAL) as server:
        client = ChatClient(server.url)
        server.clients.append(client)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(token=server.token(1), headers={"Origin": "https://evil.example"})
        await client.connect(token=server.token(1), headers={"Origin": PORTAL})
        await client.wait_for("authenticated")


async def test_production_without_cors_origins_allows_only_native_clients(
    make_server: ServerFactory,
) -> None:
    async with make_server(NODE_ENV="production") as server:
        assert await status_of(server, POLL, PORTAL) == 403
        assert await status_of(server, POLL, None) == 200


async def test_production_wildcard_must_be_asked_for(make_server: ServerFactory) -> None:
    async with make_server(NODE_ENV="production", CORS_ORIGINS="*") as server:
        assert await status_of(server, POLL, "https://anything.example") == 200


async def test_development_without_cors_origins_allows_every_origin(
    make_server: ServerFactory,
) -> None:
    async with make_server(NODE_ENV="development") as server:
        assert await status_of(server, UPGRADE, "http://localhost:5173") == 101
