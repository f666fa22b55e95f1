"""Binary attachments are refused: the chat protocol has none, and python-socketio
would keep every frame a BINARY_EVENT announces (as many as it announces) before
any check, so one socket, authenticated or not, could fill the server's memory."""

from __future__ import annotations

import json

import aiohttp
import pytest

from ecigdis_ws.transport.socketio_overrides.server import SOCKET_SERVER
from tests.support import WAIT_S, RunningServer

pytestmark = pytest.mark.backends("sqlite")

FRAME = b"\x00" * 65536
ANNOUNCEMENTS = {
    "event, before login": '459999999-["x",{}]',
    "event, one attachment": '451-["message:send",{"_placeholder":true,"num":0}]',
    "ack": '461-7[{"_placeholder":true,"num":0}]',
}


async def connected(
    server: RunningServer, session: aiohttp.ClientSession, token: str | None
) -> aiohttp.ClientWebSocketResponse:
    """A websocket at the Socket.IO level: CONNECT answered (authenticated or not)."""
    ws = await session.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket")
    assert (await ws.receive_str(timeout=WAIT_S)).startswith("0{")
    await ws.send_str("40" + (json.dumps({"token": token}) if token else ""))
    assert (await ws.receive_str(timeout=WAIT_S)).startswith("40{")
    return ws


async def closed(ws: aiohttp.ClientWebSocketResponse) -> bool:
    """Read until the server closes: True once it has (frames sent before are skipped)."""
    while True:
        message = await ws.receive(timeout=WAIT_S)
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.ERROR):
            return True


@pytest.mark.parametrize("announcement", list(ANNOUNCEMENTS.values()), ids=list(ANNOUNCEMENTS))
@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "authenticated"])
async def test_a_packet_announcing_attachments_closes_the_connection_before_any_is_kept(
    server: RunningServer, session: aiohttp.ClientSession, announcement: str, logged_in: bool
) -> None:
    sio = server.app[SOCKET_SERVER]
    ws = await connected(server, session, server.token(1) if logged_in else None)
    await ws.send_str(announcement)
    assert await closed(ws)
    assert sio._binary_packet == {}  # (python-socketio's store of announced packets)
    await server.wait_until(lambda: server.chat.sessions.count == 0 and not sio.eio.sockets)


async def test_binary_frames_after_the_announcement_find_the_connection_closed(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    sio = server.app[SOCKET_SERVER]
    ws = await connected(server, session, None)
    await ws.send_str(ANNOUNCEMENTS["event, before login"])
    for _ in range(20):  # 1.3 MB a socket could otherwise leave in the server's memory
        if ws.closed:
            break
        try:
            await ws.send_bytes(FRAME)
        except ConnectionResetError:
            break
    assert await closed(ws)
    assert sio._binary_packet == {}
    await server.wait_until(lambda: not sio.eio.sockets)


async def test_a_binary_frame_without_an_announcement_closes_the_connection(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    ws = await connected(server, session, server.token(1))
    await ws.send_bytes(b"\x04binary")  # an Engine.IO MESSAGE frame of bytes
    assert await closed(ws)
    await server.wait_until(lambda: server.chat.sessions.count == 0)
