from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, settings

from ecigdis_ws.bench.wire import accept_key, text_frame, upgrade_failure, upgrade_request
from tests.support import WAIT_S, ChatClient, RunningServer
from tests.transport.rest_support import SERVER_API_KEY, Rest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for the test's requests (REST, polling, raw websockets)."""
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def rest(server: RunningServer, session: aiohttp.ClientSession) -> Rest:
    """REST against the test's default server."""
    return Rest(server, session)


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


# -- raw TCP, for clients that break the transport's rules ---------------------------


class RawSocket:
    """A TCP connection to the server that writes exactly the bytes it is given
    (frames in one burst, PINGs it never reads the answers to) and can end with a
    reset instead of a close."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def websocket(cls, server: RunningServer, target: str) -> RawSocket:
        """A websocket opened at `target` (e.g. "/socket.io/?EIO=4&transport=websocket")."""
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        key = base64.b64encode(os.urandom(16))
        writer.write(upgrade_request(f"127.0.0.1:{server.port}", target, key))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
        assert upgrade_failure(head[:-4], accept_key(key)) is None, head
        return cls(reader, writer)

    @classmethod
    async def signed_in(cls, server: RunningServer, user_id: int) -> RawSocket:
        """A websocket whose Socket.IO CONNECT carried the user's token, answered."""
        raw = await cls.websocket(server, "/socket.io/?EIO=4&transport=websocket")
        await raw.send_text("40" + json.dumps({"token": server.token(user_id)}))
        await raw.read_until(b"40{")
        return raw

    async def send_text(self, *texts: str) -> None:
        """Each text as one masked frame, all in one write."""
        self.writer.write(b"".join(text_frame(text.encode()) for text in texts))
        await self.writer.drain()

    async def read_until(self, marker: bytes, within: float = WAIT_S) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(marker), within)

    def reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0), as a client that vanished."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


class PollingClient:
    """An Engine.IO polling session driven request by request."""

    def __init__(self, server: RunningServer, http: aiohttp.ClientSession, sid: str) -> None:
        self.server = server
        self.http = http
        self.sid = sid

    @classmethod
    async def open(cls, server: RunningServer, http: aiohttp.ClientSession) -> PollingClient:
        return cls(server, http, await open_polling_session(server, http))

    @property
    def url(self) -> str:
        return f"{self.server.url}{POLLING}&sid={self.sid}"

    async def post(self, *packets: str) -> int:
        async with self.http.post(self.url, data="\x1e".join(packets).encode()) as response:
            await response.read()
            return response.status

    async def get(self) -> tuple[int, str]:
        async with self.http.get(self.url) as response:
            return response.status, await response.text()

    async def signed_in(self, user_id: int) -> None:
        assert await self.post("40" + json.dumps({"token": self.server.token(user_id)})) == 200
        status, body = await self.get()
        assert status == 200 and "40{" in body, body

    def upgrade_target(self) -> str:
        return f"/socket.io/?EIO=4&transport=websocket&sid={self.sid}"


POLLING = "/socket.io/?EIO=4&transport=polling"


# -- hypothesis, for the tests that draw their inputs ---------------------------------

HYPOTHESIS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large],
)


def on_loop(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]) -> None:
    """Run one example on the test's event loop, from hypothesis' worker thread."""
    asyncio.run_coroutine_threadsafe(work, loop).result(timeout=60)


async def open_polling_session(server: RunningServer, http: aiohttp.ClientSession) -> str:
    """An Engine.IO polling handshake; the session's id."""
    async with http.get(server.url + POLLING) as handshake:
        text = await handshake.text()
    assert handshake.status == 200 and text.startswith("0{"), text
    sid: str = json.loads(text[1:])["sid"]
    return sid
