"""Packets that break the Engine.IO or Socket.IO protocol close their connection,
on every transport: counted by reason, logged as one WARNING line, and no
traceback. Before, an empty frame, the packet type `9`, deep JSON nesting on the
websocket fast path or a polling body that was not UTF-8 escaped as exceptions
that aiohttp logged as plain-text tracebacks, and an ack id of any length was
echoed back."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import aiohttp
import pytest

from ecigdis_ws.transport.protocol_errors import engineio_problem
from ecigdis_ws.transport.socketio_overrides.server import SOCKET_SERVER
from tests.support import WAIT_S, RunningServer, server_log_problems
from tests.transport.conftest import frames_until_closed, socketio_connected

pytestmark = pytest.mark.backends("sqlite")

DEEP = 20_000  # levels of nesting: past the stdlib json's recursion limit, under 64 KB
PACKETS = {
    "unknown Engine.IO type": ("9hello", "engineio_packet"),
    "empty packet": ("", "engineio_packet"),
    "control bytes": ("\x00\x01", "engineio_packet"),
    "deep nesting": ("42" + "[" * DEEP + "]" * DEEP, "socketio_packet"),
    "deep nesting in the data": ('42["x",' + "[" * DEEP + "]" * DEEP + "]", "socketio_packet"),
    "unknown Socket.IO type": ("4x", "socketio_packet"),
    "unfinished JSON": ('40{"token":', "socketio_packet"),
    "CONNECT data that reads as an ack id": ("401.5", "socketio_packet"),
    "ack id past 16 digits": ("42" + "9" * 17 + '["presence:request"]', "ack_id"),
    "reserved event name": ('42["disconnect"]', "reserved_event"),
}
Exchange = Callable[[str], Awaitable[bool]]  # sends one packet; True once the server closed
ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]


@asynccontextmanager
async def websocket(server: RunningServer, http: aiohttp.ClientSession) -> AsyncIterator[Exchange]:
    ws = await socketio_connected(server, http)

    async def exchange(packet: str) -> bool:
        await ws.send_str(packet)
        await frames_until_closed(ws)
        return True

    yield exchange
    await ws.close()


@asynccontextmanager
async def polling(server: RunningServer, http: aiohttp.ClientSession) -> AsyncIterator[Exchange]:
    url = server.url + "/socket.io/?EIO=4&transport=polling"
    async with http.get(url) as response:
        sid = json.loads((await response.text())[1:])["sid"]  # "0{...}": the OPEN packet
    url += f"&sid={sid}"
    async with http.post(url, data=b"40") as response:
        assert response.status == 200
    async with http.get(url) as response:
        assert (await response.text()).startswith("40{")

    async def exchange(packet: str) -> bool:
        # A bad Engine.IO packet is answered 400 here; a bad Socket.IO packet inside
        # a good one is Socket.IO's to refuse, after Engine.IO has answered 200 (as
        # in Node): either way the session is closed at once.
        # (engineio hands the packet to Socket.IO in a task of its own: the session
        # may close just after the 200)
        async with http.post(url, data=packet.encode()) as response:
            assert response.status == (400 if engineio_problem(packet) else 200)
        await server.wait_until(lambda: all_closed(server))
        return True

    yield exchange


def all_closed(server: RunningServer) -> bool:
    """No Engine.IO session open (engineio forgets a closed polling one lazily)."""
    return all(socket.closed for socket in server.app[SOCKET_SERVER].eio.sockets.values())


TRANSPORTS = {
    "websocket": (websocket, {}),
    "websocket through engineio's driver": (websocket, {"WS_COMPRESSION": "true"}),
    "polling": (polling, {}),
}


def protocol_errors(server: RunningServer, reason: str) -> float:
    counter = server.chat.metrics.protocol_errors.labels(reason)
    return float(counter._value.get())


@pytest.mark.parametrize("packet,reason", list(PACKETS.values()), ids=list(PACKETS))
@pytest.mark.parametrize("transport", list(TRANSPORTS), ids=list(TRANSPORTS))
async def test_a_malformed_packet_closes_its_connection_with_one_warning_and_no_traceback(
    make_server: ServerFactory,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    transport: str,
    packet: str,
    reason: str,
) -> None:
    connect, env = TRANSPORTS[transport]
    async with make_server(**env) as server, aiohttp.ClientSession() as http:
        async with connect(server, http) as exchange:
            with caplog.at_level(logging.DEBUG):
                assert await exchange(packet)
        await server.wait_until(lambda: all_closed(server) and server.chat.sessions.count == 0)

        assert protocol_errors(server, reason) == 1
        output = capsys.readouterr()
        warnings = [line for line in (output.out + output.err).splitlines()
                    if "broke the protocol" in line]
        assert len(warnings) == 1 and f"reason={reason}" in warnings[0], warnings
        assert "Traceback" not in output.out + output.err
        assert server_log_problems(caplog.records) == []


@pytest.mark.parametrize("transport", list(TRANSPORTS), ids=list(TRANSPORTS))
async def test_binary_data_closes_the_connection_on_every_transport(
    make_server: ServerFactory, transport: str
) -> None:
    connect, env = TRANSPORTS[transport]
    async with make_server(**env) as server, aiohttp.ClientSession() as http:
        async with connect(server, http) as exchange:
            # (Engine.IO's base64 form on polling; over a websocket it is a text frame
            # here, and a binary frame in test_binary_attachments.py)
            assert await exchange("bBAQE=")
        assert protocol_errors(server, "binary_data") == 1


async def test_a_polling_body_that_is_not_utf8_is_refused(
    server: RunningServer,
) -> None:
    async with aiohttp.ClientSession() as http, polling(server, http):
        sio = server.app[SOCKET_SERVER]
        (sid,) = list(sio.eio.sockets)
        url = server.url + f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        async with http.post(url, data=b"42[\"x\",\"\xff\xfe\"]") as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "INVALID_PAYLOAD"
        await server.wait_until(lambda: all_closed(server))
        assert protocol_errors(server, "polling_body") == 1


async def test_an_ack_id_of_sixteen_digits_is_answered(server: RunningServer) -> None:
    """The bound is past every id socket.io-client counts to (2**53 - 1)."""
    async with aiohttp.ClientSession() as http:
        ws = await socketio_connected(server, http)
        await ws.send_str("42" + "9" * 16 + '["presence:request"]')
        while True:
            text = await ws.receive_str(timeout=WAIT_S)
            if text.startswith("43"):
                assert text.startswith("43" + "9" * 16 + "[")
                break
        await ws.close()
