"""Binary attachments are refused: the chat protocol has none, and python-socketio
would keep every frame a BINARY_EVENT announces (as many as it announces) before
any check, so one socket, authenticated or not, could fill the server's memory."""

from __future__ import annotations

import aiohttp
import pytest

from ecigdis_ws.transport.socketio_overrides.server import SOCKET_SERVER
from tests.support import RunningServer
from tests.transport.conftest import frames_until_closed, socketio_connected

pytestmark = pytest.mark.backends("sqlite")

FRAME = b"\x00" * 65536
ANNOUNCEMENTS = {
    "event, before login": '459999999-["x",{}]',
    "event, one attachment": '451-["message:send",{"_placeholder":true,"num":0}]',
    "ack": '461-7[{"_placeholder":true,"num":0}]',
}


@pytest.mark.parametrize("announcement", list(ANNOUNCEMENTS.values()), ids=list(ANNOUNCEMENTS))
@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "authenticated"])
async def test_a_packet_announcing_attachments_closes_the_connection_before_any_is_kept(
    server: RunningServer, session: aiohttp.ClientSession, announcement: str, logged_in: bool
) -> None:
    sio = server.app[SOCKET_SERVER]
    ws = await socketio_connected(server, session, server.token(1) if logged_in else None)
    await ws.send_str(announcement)
    await frames_until_closed(ws)  # (returns once the server has closed)
    assert sio._binary_packet == {}  # (python-socketio's store of announced packets)
    await server.wait_until(lambda: server.chat.sessions.count == 0 and not sio.eio.sockets)


async def test_binary_frames_after_the_announcement_find_the_connection_closed(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    sio = server.app[SOCKET_SERVER]
    ws = await socketio_connected(server, session, None)
    await ws.send_str(ANNOUNCEMENTS["event, before login"])
    for _ in range(20):  # 1.3 MB a socket could otherwise leave in the server's memory
        if ws.closed:
            break
        try:
            await ws.send_bytes(FRAME)
        except ConnectionResetError:
            break
    await frames_until_closed(ws)  # (returns once the server has closed)
    assert sio._binary_packet == {}
    await server.wait_until(lambda: not sio.eio.sockets)


async def test_a_binary_frame_without_an_announcement_closes_the_connection(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    ws = await socketio_connected(server, session, server.token(1))
    await ws.send_bytes(b"\x04binary")  # an Engine.IO MESSAGE frame of bytes
    await frames_until_closed(ws)  # (returns once the server has closed)
    await server.wait_until(lambda: server.chat.sessions.count == 0)
