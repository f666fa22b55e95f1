"""MAX_PAYLOAD_BYTES and the polling body limits, refused without memory growth."""

from __future__ import annotations

import gzip
import json
import resource

import aiohttp
import engineio.payload
import pytest

from ecigdis_ws.transport.limits import MAX_PACKETS_PER_POST
from ecigdis_ws.transport.socketio_overrides.polling import PollingPayload
from tests.support import RunningServer

BOMB_BYTES = 64 * 1024 * 1024  # what the gzip body would inflate to
GROWTH_LIMIT_KB = 16 * 1024  # far below the bomb: it was never inflated


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def polling_session(http: aiohttp.ClientSession, server: RunningServer) -> str:
    async with http.get(server.url + "/socket.io/?EIO=4&transport=polling") as response:
        sid: str = json.loads((await response.text())[1:])["sid"]
    async with http.post(server.url + f"/socket.io/?EIO=4&transport=polling&sid={sid}",
                         data="40") as response:
        assert response.status == 200
    return sid


async def post(http: aiohttp.ClientSession, server: RunningServer, sid: str, body: bytes,
               headers: dict[str, str] | None = None) -> tuple[int, str]:
    url = server.url + f"/socket.io/?EIO=4&transport=polling&sid={sid}"
    async with http.post(url, data=body, headers=headers or {}) as response:
        return response.status, await response.text()


@pytest.mark.backends("sqlite")
async def test_gzip_bomb_is_refused_without_inflating(server: RunningServer) -> None:
    bomb = gzip.compress(b"4" + b"x" * BOMB_BYTES)
    before = peak_rss_kb()
    async with aiohttp.ClientSession() as http:
        sid = await polling_session(http, server)
        status, text = await post(http, server, sid, bomb, {"Content-Encoding": "gzip"})
    assert status == 415 and "compressed" in text
    assert peak_rss_kb() - before < GROWTH_LIMIT_KB


@pytest.mark.backends("sqlite")
async def test_oversized_polling_body_gets_413_and_its_session_is_closed(
    server: RunningServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        sid = await polling_session(http, server)
        status, _ = await post(http, server, sid, b"4" + b"x" * 70_000)
        assert status == 413
        url = server.url + f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        async with http.get(url) as response:
            assert response.status == 400  # the session is gone
    assert server.chat.sessions.count == 0


@pytest.mark.backends("sqlite")
async def test_polling_body_of_too_many_packets_gets_400(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        sid = await polling_session(http, server)
        too_many = b"\x1e".join([b"3"] * (MAX_PACKETS_PER_POST + 1))
        status, text = await post(http, server, sid, too_many)
        assert status == 400 and "packets" in text
        status, _ = await post(http, server, sid, b"\x1e".join([b"3"] * MAX_PACKETS_PER_POST))
        assert status == 200


@pytest.mark.backends("sqlite")
async def test_websocket_frame_over_the_limit_closes_that_connection(
    server: RunningServer,
) -> None:
    # aiohttp refuses by the frame header (max_msg_size = MAX_PAYLOAD_BYTES), so
    # the server never buffers the frame; the client sees the connection close.
    async with aiohttp.ClientSession() as http, http.ws_connect(
        server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    ) as ws:
        await ws.receive()  # the open packet
        await ws.send_str("40")
        await ws.receive()  # CONNECT
        try:
            await ws.send_str("42" + "x" * (4 * 1024 * 1024))
            message = await ws.receive()
        except ConnectionError:
            return
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                aiohttp.WSMsgType.ERROR)
        if message.type == aiohttp.WSMsgType.CLOSE:
            assert message.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


def test_the_server_decodes_as_many_packets_as_the_limits_let_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """engineio's own default is 16 (the tests' clients raise theirs, tests/conftest.py);
    the server's decoder takes MAX_PACKETS_PER_POST whatever engineio's default is."""
    monkeypatch.setattr(engineio.payload.Payload, "max_decode_packets", 16)
    body = "\x1e".join(["3"] * MAX_PACKETS_PER_POST)
    assert len(PollingPayload(encoded_payload=body).packets) == MAX_PACKETS_PER_POST
    with pytest.raises(ValueError):
        engineio.payload.Payload(encoded_payload=body)
