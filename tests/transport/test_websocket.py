"""The direct websocket path (transport/socketio_overrides/websocket.py), driven by raw
websocket clients."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import orjson
import pytest
from structlog.testing import capture_logs

from ecigdis_ws.observability.log_setup import merge_event_context
from ecigdis_ws.transport.socketio_overrides.server import SOCKET_SERVER
from ecigdis_ws.transport.socketio_overrides.websocket import DirectSocket
from ecigdis_ws.transport.socketio_overrides.websocket_heartbeat import HEARTBEAT_STEP_S, on_step
from ecigdis_ws.websocket_frames import TEXT, frame
from tests.support import RunningServer, record_disconnects, transport_closed
from tests.transport.conftest import room

SLOW_CLIENT = "disconnected a client that reads too slowly"

pytestmark = pytest.mark.backends("sqlite")

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]


def event_packet(ack_id: int, event: str, data: Any) -> str:
    """A Socket.IO EVENT asking for an acknowledgement, as socket.io-client writes it."""
    return f"42{ack_id}" + orjson.dumps([event, data]).decode()


class RawClient:
    """Engine.IO v4 / Socket.IO v5 spoken by hand, to control pongs and reading."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def connect(
        cls, session: aiohttp.ClientSession, server: RunningServer, token: str, **options: Any
    ) -> RawClient:
        url = f"{server.url}/socket.io/?EIO=4&transport=websocket"
        client = cls(await session.ws_connect(url, **options))
        opened = await client.ws.receive_str()
        assert opened.startswith("0{")
        await client.ws.send_str("40" + orjson.dumps({"token": token}).decode())
        assert (await client.next_text()).startswith("40{")
        return client

    async def next_text(self) -> str:
        message = await self.ws.receive(timeout=5)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        return str(message.data)


async def test_websocket_is_served_without_compression_by_default(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as session:
        client = await RawClient.connect(session, server, server.token(1), compress=15)
        assert client.ws.compress == 0
        assert client.ws.protocol is None
        await client.ws.close()


async def test_ws_compression_true_negotiates_permessage_deflate_and_chat_works(
    make_server: ServerFactory,
) -> None:
    async with make_server(WS_COMPRESSION="true") as server, aiohttp.ClientSession() as session:
        conversation = await server.conversation(1, 2)
        bob = await server.client(2)
        assert (await bob.call("conversation:join", {"conversationId": conversation}))["ok"]
        alice = await RawClient.connect(session, server, server.token(1), compress=15)
        assert alice.ws.compress == 15
        join = event_packet(1, "conversation:join", {"conversationId": conversation})
        await alice.ws.send_str(join)
        while not (await alice.next_text()).startswith("431"):
            pass
        await alice.ws.send_str(event_packet(2, "message:send", {
            "conversationId": conversation, "text": "squeezed", "messageId": "z1"
        }))
        [message] = await bob.wait_for("message:new")
        assert message["text"] == "squeezed"
        await alice.ws.close()


def direct_sockets(server: RunningServer) -> list[DirectSocket]:
    sockets = server.app[SOCKET_SERVER].eio.sockets.values()
    return [socket for socket in sockets if isinstance(socket, DirectSocket)]


async def next_ping(client: RawClient) -> None:
    """Read up to the next Engine.IO PING (what the handshake sent comes first)."""
    while await client.next_text() != "2":
        pass


async def test_a_websocket_client_that_answers_pings_stays_connected(
    server: RunningServer,
) -> None:
    interval = server.settings.ping_interval_ms / 1000
    sio = server.app[SOCKET_SERVER]
    async with aiohttp.ClientSession() as session:
        client = await RawClient.connect(session, server, server.token(1))
        for _ in range(3):  # three heartbeats: more than interval + timeout in all
            server.clock.advance(on_step(server.clock.now(), interval))
            await next_ping(client)
            await client.ws.send_str("3")
            await server.wait_until(lambda: sio.pongs_awaited == 0)
        assert server.chat.sessions.count == 1
        assert not client.ws.closed
        await client.ws.close()


async def test_sockets_connected_within_one_heartbeat_step_are_pinged_together(
    server: RunningServer,
) -> None:
    """One wake-up pings both (websocket_heartbeat.HEARTBEAT_STEP_S), not one per socket."""
    interval = server.settings.ping_interval_ms / 1000
    server.clock.advance(on_step(server.clock.now(), 0) + 0.1)  # just past a step
    async with aiohttp.ClientSession() as session:
        first = await RawClient.connect(session, server, server.token(1))
        server.clock.advance(HEARTBEAT_STEP_S * 0.8)
        second = await RawClient.connect(session, server, server.token(2))
        server.clock.advance(on_step(server.clock.now(), interval) - 0.001)
        sockets = direct_sockets(server)
        assert len(sockets) == 2
        assert not any(socket.awaiting_pong for socket in sockets)
        server.clock.advance(0.001)
        for client in (first, second):
            await next_ping(client)
        await first.ws.close()
        await second.ws.close()


async def test_a_websocket_client_that_stops_answering_pings_is_dropped(
    server: RunningServer,
) -> None:
    interval = server.settings.ping_interval_ms / 1000
    timeout = server.settings.ping_timeout_ms / 1000
    async with aiohttp.ClientSession() as session:
        client = await RawClient.connect(session, server, server.token(1))
        server.clock.advance(on_step(server.clock.now(), interval))
        await next_ping(client)  # never answered
        server.clock.advance(timeout - 0.1)
        assert server.chat.sessions.count == 1  # still within the ping timeout
        server.clock.advance(0.2)
        assert await client.next_text() == "1"  # Engine.IO CLOSE, then the close itself
        closed = await client.ws.receive(timeout=5)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await server.wait_until(lambda: server.chat.sessions.count == 0)


async def test_a_client_that_does_not_read_is_disconnected_once_its_backlog_passes_the_limit(
    make_server: ServerFactory,
) -> None:
    async with make_server(
        WS_MAX_BUFFERED_BYTES="65536", RATE_LIMIT_MESSAGES="0", RATE_LIMIT_EVENTS="0",
        MAX_MESSAGE_LENGTH="50000",
    ) as server:
        conversation, (sender,) = await room(server, 1)
        await server.chat.storage.conversations.add_member(conversation, 2, 0)
        stalled = socket.create_connection(("127.0.0.1", server.port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            await _raw_join(stalled, server, conversation)
            await sender.wait_for("user:joined", lambda joined: joined["userId"] == 2)
            text = "x" * 50000
            with capture_logs(processors=[merge_event_context]) as logs:
                for n in range(600):  # 30 MB, far more than the kernel's buffers and ours
                    reply = await sender.call("message:send", {
                        "conversationId": conversation, "text": text, "messageId": f"m{n}"
                    })
                    assert reply["ok"]
                    if server.chat.sessions.count == 1:
                        break
            assert server.chat.sessions.count == 1  # the stalled reader is gone
            # The line names the slow client's socket, not the sender whose message
            # happened to overflow it.
            (line,) = [log for log in logs if log["event"] == SLOW_CLIENT]
            sender_sid = sender.sio.get_sid()
            sender_session = server.chat.sessions.get(sender_sid)
            assert sender_session is not None and line["sid"] != sender_session.connection_id
            assert "user_id" not in line and "socket_event" not in line
            # ...and the client that reads keeps working.
            reply = await sender.call("message:send", {
                "conversationId": conversation, "text": "still here", "messageId": "last"
            })
            assert reply["ok"]
        finally:
            stalled.close()


async def _raw_join(sock: socket.socket, server: RunningServer, conversation: int) -> None:
    """A websocket handshake and join over a plain socket that then never reads."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    request = (
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    for packet in ("40" + orjson.dumps({"token": server.token(2)}).decode(),
                   event_packet(1, "conversation:join", {"conversationId": conversation})):
        await loop.sock_sendall(sock, _masked_text_frame(packet.encode()))


def _masked_text_frame(payload: bytes) -> bytes:
    return frame(payload, TEXT, mask=b"\x01\x02\x03\x04")


async def test_closing_every_transport_twice_at_once_still_sends_each_client_the_close_packet(
    server: RunningServer,
) -> None:
    """Two resyncs at once (a fan-out channel recovering twice in a row, or a drain
    meeting one): the second must not end a websocket whose close the first has
    begun, before its CLOSE packet went out. The client saw "transport error"
    then, not the Engine.IO close (found by tests/cluster/test_redis_cluster_failover.py).

    The disconnect handler is slowed here by a wrapper: on a cluster it waits on
    Redis (presence) while the fan-out recovers, which one node cannot cause."""
    clients = [await server.client(user_id) for user_id in (1, 2, 3)]
    seen = {id(client): record_disconnects(client) for client in clients}
    sio = server.app[SOCKET_SERVER]
    handle_disconnect = sio.handlers["/"]["disconnect"]

    async def slow_disconnect(*args: Any) -> None:
        await asyncio.sleep(0.05)
        await handle_disconnect(*args)

    sio.handlers["/"]["disconnect"] = slow_disconnect

    await asyncio.gather(sio.close_transports(), sio.close_transports())

    for client in clients:
        await client.wait_disconnected()
        [ended] = seen[id(client)]
        assert ended.reason == "server disconnect" and transport_closed(ended), ended
