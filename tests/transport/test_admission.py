"""The way in has one deadline and one cap, counted at the transport.

Before, a websocket that never sent the Socket.IO CONNECT stayed open for ever and
was counted nowhere (300 from one address while /status said 2), and sockets cut
off by AUTH_TIMEOUT_MS or refused at CONNECT got a Socket.IO packet but kept their
TCP connection. Each test counts the server's open TCP connections
(`RunningServer.http_connections`), which is what those attacks held."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest

from tests.support import WAIT_S, RunningServer
from tests.transport.conftest import frames_until_closed, raw_websocket, socketio_connected

pytestmark = pytest.mark.backends("sqlite")

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]
AUTH_TIMEOUT_S = 10.0  # AUTH_TIMEOUT_MS's default


async def signed_in_websocket(
    server: RunningServer, http: aiohttp.ClientSession
) -> aiohttp.ClientWebSocketResponse:
    """A raw websocket whose Socket.IO CONNECT carried user 1's token."""
    ws = await socketio_connected(server, http, server.token(1))
    await server.wait_until(lambda: server.chat.sessions.count == 1)
    return ws


async def test_a_websocket_that_never_sends_connect_is_closed_at_the_auth_timeout(
    server: RunningServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        sockets = [await raw_websocket(server, http) for _ in range(5)]
        assert server.http_connections == 5
        assert server.chat.admission.waiting == 5

        await server.advance(AUTH_TIMEOUT_S - 1)
        assert server.http_connections == 5
        await server.advance(1)

        for ws in sockets:
            assert await frames_until_closed(ws) == []
        await server.wait_until(lambda: server.http_connections == 0)
        assert server.chat.admission.waiting == 0


async def test_connections_that_never_send_connect_count_against_the_address(
    make_server: ServerFactory,
) -> None:
    async with make_server(MAX_UNAUTHENTICATED_PER_IP="3") as server, \
            aiohttp.ClientSession() as http:
        sockets = [await raw_websocket(server, http) for _ in range(3)]

        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket")
        assert refused.value.status == 429
        async with http.get(server.url + "/socket.io/?EIO=4&transport=polling") as response:
            assert response.status == 429
            assert await response.json() == {"error": {
                "code": "RATE_LIMITED", "message": "too many connections from this address"}}
        assert server.http_connections <= 4  # (the polling GET's, kept alive)

        await sockets[0].close()
        await server.wait_until(lambda: server.chat.admission.waiting == 2)
        await raw_websocket(server, http)  # the freed place is usable


async def test_a_socket_refused_at_connect_loses_its_connection_at_the_deadline(
    server: RunningServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await raw_websocket(server, http)
        await ws.send_str("40" + json.dumps({"token": "not-a-token"}))
        refusal = await ws.receive_str(timeout=WAIT_S)
        assert refusal.startswith("44{")  # CONNECT_ERROR
        assert json.loads(refusal[2:])["data"]["code"] == "AUTH_FAILED"
        assert server.chat.admission.waiting == 1  # still counted against the address

        await server.advance(AUTH_TIMEOUT_S)

        assert await frames_until_closed(ws) == []
        await server.wait_until(lambda: server.http_connections == 0)
        assert server.chat.sessions.count == 0 and server.chat.admission.waiting == 0


async def test_a_socket_that_does_not_authenticate_in_time_is_told_then_cut_off(
    server: RunningServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await raw_websocket(server, http)
        await ws.send_str("40")
        assert (await ws.receive_str(timeout=WAIT_S)).startswith("40{")

        await server.advance(AUTH_TIMEOUT_S)

        frames = await frames_until_closed(ws)
        assert "41" in frames  # the Socket.IO DISCONNECT comes before the close
        await server.wait_until(lambda: server.http_connections == 0)
        assert server.chat.sessions.count == 0


async def test_a_socket_disconnected_by_the_server_loses_its_connection(
    server: RunningServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await signed_in_websocket(server, http)

        await server.chat.sessions.end_user_sessions(1)  # the main site revoked the token

        assert "41" in await frames_until_closed(ws)
        await server.wait_until(lambda: server.http_connections == 0)


async def test_a_polling_connection_that_never_sends_connect_is_closed_at_the_deadline(
    server: RunningServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        url = server.url + "/socket.io/?EIO=4&transport=polling"
        async with http.get(url) as response:
            sid = json.loads((await response.text())[1:])["sid"]
        assert server.chat.admission.waiting == 1

        await server.advance(AUTH_TIMEOUT_S)

        await server.wait_until(lambda: server.chat.admission.waiting == 0)
        async with http.get(url + f"&sid={sid}") as response:
            assert response.status == 400  # the session is gone


async def test_an_authenticated_socket_keeps_its_connection_past_the_deadline(
    server: RunningServer,
) -> None:
    client = await server.client(1)

    await server.advance(AUTH_TIMEOUT_S * 3)

    assert client.sio.connected
    assert (await client.call("presence:request"))["ok"]


async def test_a_client_that_leaves_the_namespace_loses_its_connection(
    server: RunningServer,
) -> None:
    """The chat has one namespace: a connection that left it has no more use."""
    async with aiohttp.ClientSession() as http:
        ws = await signed_in_websocket(server, http)

        await ws.send_str("41")  # Socket.IO DISCONNECT, the Engine.IO connection kept

        await frames_until_closed(ws)
        await server.wait_until(lambda: server.http_connections == 0)
        assert server.chat.sessions.count == 0
