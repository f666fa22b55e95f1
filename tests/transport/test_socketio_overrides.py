"""The private members of python-socketio and python-engineio the server relies on
(listed in src/ecigdis_ws/transport/socketio_overrides/__init__.py): each is named
here, with the parameters we call or override it with, so an upgrade that renames
or reshapes one fails this test by name instead of the server misbehaving."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import engineio
import engineio.async_drivers.aiohttp as engineio_aiohttp
import engineio.async_socket
import engineio.payload
import pytest
import socketio
from aiohttp import WSMessage, WSMsgType, web
from aiohttp._websocket.reader import WebSocketDataQueue
from aiohttp.base_protocol import BaseProtocol
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_protocol import RequestHandler

from ecigdis_ws import json_codec
from ecigdis_ws.clock import ManualClock
from ecigdis_ws.observability.metrics import Metrics
from ecigdis_ws.transport.protocol_errors import ProtocolErrors
from ecigdis_ws.transport.socketio_overrides.polling import TransportLimits
from ecigdis_ws.transport.socketio_overrides.server import ChatSocketServer, ack_arguments

# (owner, member, parameter names after self; None: an attribute, not a method)
METHODS: list[tuple[type[Any], str, tuple[str, ...]]] = [
    (socketio.AsyncServer, "_handle_eio_connect", ("eio_sid", "environ")),
    (socketio.AsyncServer, "_handle_eio_message", ("eio_sid", "data")),
    (socketio.AsyncServer, "_handle_eio_disconnect", ("eio_sid", "reason")),
    (socketio.AsyncServer, "_handle_connect", ("eio_sid", "namespace", "data")),
    (socketio.AsyncServer, "_handle_event", ("eio_sid", "namespace", "id", "data")),
    (socketio.AsyncServer, "_handle_event_internal",
     ("server", "sid", "eio_sid", "data", "namespace", "id")),
    (socketio.AsyncServer, "_handle_disconnect", ("eio_sid", "namespace", "reason")),
    (socketio.AsyncServer, "disconnect", ("sid", "namespace", "ignore_queue")),
    (engineio.async_socket.AsyncSocket, "schedule_ping", ()),
    (engineio.async_socket.AsyncSocket, "check_ping_timeout", ()),
    (engineio.async_socket.AsyncSocket, "receive", ("pkt",)),
    (engineio.async_socket.AsyncSocket, "send", ("pkt",)),
    (engineio.async_socket.AsyncSocket, "close", ("wait", "abort", "reason")),
    (engineio.async_socket.AsyncSocket, "_websocket_handler", ("ws",)),
    (engineio.async_socket.AsyncSocket, "__init__", ("server", "sid")),
    (engineio.async_socket.AsyncSocket, "poll", ()),
    (engineio.async_socket.AsyncSocket, "handle_post_request", ("environ",)),
    (engineio.async_socket.AsyncSocket, "_upgrade_websocket", ("environ",)),
    (engineio.payload.Payload, "__init__", ("packets", "encoded_payload")),
    (asyncio.Queue, "_put", ("item",)),
    (asyncio.Queue, "_get", ()),
    (engineio.AsyncServer, "_service_task", ()),
    (engineio.AsyncServer, "generate_id", ()),
    (engineio_aiohttp.WebSocket, "wait", ()),
    (socketio.AsyncManager, "basic_enter_room", ("sid", "namespace", "room", "eio_sid")),
    (socketio.AsyncManager, "basic_leave_room", ("sid", "namespace", "room")),
    (socketio.AsyncManager, "get_participants", ("namespace", "room")),
    (socketio.AsyncRedisManager, "_redis_connect", ()),
    (socketio.AsyncRedisManager, "_publish", ("data",)),
    (socketio.AsyncRedisManager, "_listen", ()),
    (socketio.AsyncRedisManager, "_handle_emit", ("message",)),
    (socketio.AsyncRedisManager, "is_connected", ("sid", "namespace")),
]
SERVER_ATTRIBUTES = ("environ", "_binary_packet", "handlers", "packet_class", "manager",
                     "manager_initialized")
ENGINE_ATTRIBUTES = ("_async", "sockets", "reason", "start_service_task", "service_task_handle",
                     "ping_interval_grace_period", "ping_interval", "ping_timeout",
                     "max_http_buffer_size")
REDIS_MANAGER_ATTRIBUTES = ("host_id", "redis_url", "redis", "channel", "connected", "rooms")
SOCKET_ATTRIBUTES = ("queue", "closed", "closing", "upgraded", "upgrading", "connected",
                     "last_ping")


@pytest.mark.parametrize(
    "owner,name,parameters", METHODS, ids=[f"{o.__name__}.{n}" for o, n, _ in METHODS]
)
def test_each_method_we_override_or_call_is_still_there_with_its_parameters(
    owner: type[Any], name: str, parameters: tuple[str, ...]
) -> None:
    member = getattr(owner, name, None)
    assert member is not None, f"{owner.__module__}.{owner.__name__}.{name} is gone"
    found = tuple(inspect.signature(member).parameters)[1:]  # (after self)
    assert found[:len(parameters)] == parameters, (
        f"{owner.__name__}.{name}{found} no longer takes {parameters}"
    )


def test_the_attributes_we_read_are_still_set() -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp")
    for name in SERVER_ATTRIBUTES:
        assert hasattr(sio, name), f"socketio.AsyncServer().{name} is gone"
    for name in ENGINE_ATTRIBUTES:
        assert hasattr(sio.eio, name), f"engineio.AsyncServer().{name} is gone"
    assert {"translate_request", "websocket"} <= set(sio.eio._async), "driver table changed"
    socket = engineio.async_socket.AsyncSocket(sio.eio, "sid")
    for name in SOCKET_ATTRIBUTES:
        assert hasattr(socket, name), f"engineio.AsyncSocket().{name} is gone"
    assert hasattr(engineio.payload.Payload, "max_decode_packets")
    manager = socketio.AsyncRedisManager("redis://127.0.0.1:1/0", channel="c")
    for name in REDIS_MANAGER_ATTRIBUTES:
        assert hasattr(manager, name), f"socketio.AsyncRedisManager().{name} is gone"


async def test_the_frames_waiting_are_counted_where_aiohttp_keeps_them() -> None:
    """inbound.py's `pending_frames` reads `WebSocketResponse._reader._buffer`: the
    messages aiohttp has parsed that nobody has received yet."""
    response = web.WebSocketResponse()
    assert response._reader is None  # (until prepared: pending_frames says 0)
    reader = WebSocketDataQueue(BaseProtocol(asyncio.get_running_loop()), 2**16,
                                loop=asyncio.get_running_loop())
    reader.feed_data(WSMessage(WSMsgType.TEXT, "4", None), 1)
    assert len(reader._buffer) == 1


def test_the_http_parser_we_drop_after_an_upgrade_is_where_aiohttp_keeps_it() -> None:
    """handshake_leftovers.py sets `RequestHandler._parser` to None once aiohttp has
    accepted a websocket upgrade (`_upgraded`, `_payload_parser` set)."""
    slots = {name for cls in RequestHandler.__mro__ for name in getattr(cls, "__slots__", ())}
    assert {"_parser", "_upgraded", "_payload_parser"} <= slots


async def test_the_request_cache_we_clear_is_the_one_reify_fills() -> None:
    """handshake_leftovers.py clears `BaseRequest._cache`: the values aiohttp parsed
    are cached there and computed again once it is empty."""
    request = make_mocked_request("GET", "/socket.io/?EIO=4", headers={"Upgrade": "websocket"})
    assert request.query["EIO"] == "4"
    assert "query" in request._cache
    request._cache.clear()
    assert request.query["EIO"] == "4" and request.headers["Upgrade"] == "websocket"


@pytest.mark.parametrize("reply", [{"ok": True}, None, ("a", 1), [1, 2]])
async def test_the_fast_path_acks_as_python_socketio_does(reply: Any) -> None:
    """The websocket fast path writes an ack itself; python-socketio's own dispatch
    (`_handle_event_internal`, run here with a handler returning `reply`) must
    produce the same packet."""
    sent: list[Any] = []
    sio = ChatSocketServer(clock=ManualClock(), protocol_errors=ProtocolErrors(
        Metrics().protocol_errors), limits=TransportLimits(1 << 20, 100),
        upgrade_timeout_s=10.0, async_mode="aiohttp")

    async def send_packet(eio_sid: str, pkt: Any) -> None:
        sent.append(pkt.encode())

    async def handler(sid: str, *args: Any) -> Any:
        return reply

    sio._send_packet = send_packet
    sio.on("x", handler)
    await sio._handle_event_internal(sio, "sid", "eio", ["x"], "/", 12)

    assert sent == ["312" + json_codec.dumps(ack_arguments(reply))]
