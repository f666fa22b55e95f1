"""New websocket connections answered by the first middleware
(transport/socketio_overrides/websocket_entry.py), not through engineio's request
path. The refusals it shares with the middlewares are tested where they are
(test_origins.py, test_admission.py, test_limits_and_errors.py): their websocket
cases go through it, as every raw or python-socketio websocket of the suite does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from ecigdis_ws.transport.socketio_overrides.server import SOCKET_SERVER
from ecigdis_ws.transport.socketio_overrides.websocket_entry import is_new_websocket
from tests.support import WAIT_S, RunningServer
from tests.transport.conftest import socketio_connected

pytestmark = pytest.mark.backends("sqlite")

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]
NEW = "/socket.io/?EIO=4&transport=websocket"
UPGRADE_HEADERS = {"Upgrade": "websocket", "Connection": "Upgrade"}


def suspended(coroutine: Any) -> list[str]:
    """The coroutines awaiting one another from `coroutine` down, by name."""
    names = []
    while getattr(coroutine, "cr_code", None) is not None:
        names.append(coroutine.cr_code.co_qualname)
        coroutine = coroutine.cr_await
    return names


def request_tasks() -> list[asyncio.Task[Any]]:
    """aiohttp's task per request being handled (its `_handle_request`)."""
    return [task for task in asyncio.all_tasks()
            if suspended(task.get_coro())[:1] == ["RequestHandler._handle_request"]]


async def test_an_idle_websocket_keeps_one_reader_of_ours_and_no_handshake_leftovers(
    server: RunningServer,
) -> None:
    """Under aiohttp's own frames, only the entry and the socket's reader wait;
    engineio's request path and the other middlewares (each holding the handshake)
    are not there, and the request has dropped what it parsed for the handshake."""
    async with aiohttp.ClientSession() as http:
        ws = await socketio_connected(server, http, server.token(1))
        await server.wait_until(lambda: server.chat.sessions.count == 1)
        [task] = request_tasks()
        chain = suspended(task.get_coro())
        ours = chain[chain.index("Application._handle") + 2:chain.index(
            "WebSocketResponse.receive")]
        assert ours == ["websocket_entry_middleware.<locals>.enter", "WebSocketEntry.serve",
                        "DirectSocket.serve"]
        request = task.get_coro().cr_frame.f_locals["request"]
        assert request._cache == {}
        assert request.protocol._parser is None  # (the websocket's reader has the bytes)
        assert (await ws.receive_str(timeout=WAIT_S)).startswith("42[\"connected\"")
        await ws.close()


async def open_packet(server: RunningServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.url + NEW) as ws:
        opened = await ws.receive_str(timeout=WAIT_S)
    assert opened.startswith("0")
    data: dict[str, Any] = json.loads(opened[1:])
    return data


async def test_the_open_packet_is_the_one_engineio_writes_for_a_websocket(
    make_server: ServerFactory,
) -> None:
    """With WS_COMPRESSION every websocket goes through engineio's own path."""
    settings = {"PING_INTERVAL_MS": "12000", "PING_TIMEOUT_MS": "7000",
                "MAX_PAYLOAD_BYTES": "50000"}
    async with make_server(**settings) as ours:
        direct = await open_packet(ours)
    async with make_server(WS_COMPRESSION="true", **settings) as engineio_own:
        reference = await open_packet(engineio_own)
    assert direct.pop("sid") != reference.pop("sid")
    assert direct == reference == {"upgrades": [], "pingTimeout": 7000,
                                   "pingInterval": 12000, "maxPayload": 50000}


async def test_a_handshake_aiohttp_refuses_gets_400_and_leaves_no_session(
    server: RunningServer,
) -> None:
    """Through engineio the socket was registered and counted before the handshake
    failed, and stayed until its admission deadline."""
    sio = server.app[SOCKET_SERVER]
    headers = {**UPGRADE_HEADERS, "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "bad"}
    async with aiohttp.ClientSession() as http, http.get(server.url + NEW,
                                                          headers=headers) as response:
        assert response.status == 400
    assert sio.eio.sockets == {}
    assert server.chat.admission.waiting == 0


@pytest.mark.parametrize("path,headers,new", [
    (NEW, UPGRADE_HEADERS, True),
    (NEW, {"Upgrade": "WebSocket", "Connection": "keep-alive, Upgrade"}, True),
    ("/socket.io/?EIO=4&transport=polling", UPGRADE_HEADERS, False),
    ("/socket.io/?EIO=3&transport=websocket", UPGRADE_HEADERS, False),
    ("/socket.io/?EIO=4&EIO=4&transport=websocket", UPGRADE_HEADERS, False),
    (NEW + "&sid=abc", UPGRADE_HEADERS, False),
    (NEW + "&j=1", UPGRADE_HEADERS, False),
    (NEW, {"Connection": "Upgrade"}, False),
    (NEW, {"Upgrade": "websocket"}, False),
    ("/socket.io/x?EIO=4&transport=websocket", UPGRADE_HEADERS, False),
], ids=["new", "any-case", "polling", "eio3", "repeated-eio", "sid", "jsonp",
        "no-upgrade", "no-connection-upgrade", "other-path"])
def test_only_what_engineio_would_open_as_a_websocket_is_taken(
    path: str, headers: dict[str, str], new: bool
) -> None:
    """The rest goes on to engineio, which answers it as it always has."""
    assert is_new_websocket(make_mocked_request("GET", path, headers=headers)) is new
    assert not is_new_websocket(make_mocked_request("POST", path, headers=headers))
