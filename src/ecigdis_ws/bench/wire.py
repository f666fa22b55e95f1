"""Engine.IO v4 / Socket.IO v5 over one websocket, cut down to what a load generator needs.

Each client is an asyncio Protocol on its own TCP (or TLS) connection to
`URL/socket.io/?EIO=4&transport=websocket`: it sends the HTTP upgrade (offering no
permessage-deflate), parses websocket frames straight out of `data_received` and
writes its frames with `transport.write`. No task, queue or future per packet: on
this machine aiohttp's `ws_connect` client cost 4.2 µs of CPU per small frame
received one at a time over 500 sockets, this 2.6 µs, and the generator shares two
cores with the server it measures.

On top: Engine.IO pings are answered ("2" → "3"), CONNECT carries the token as auth
(`40{"token":…}`), events go out with ack ids (`42<id>[…]`), and `42[…]` events and
`43<id>[…]` acks come back. The hot paths — `message:send` out, its ack and
`message:new` in — are formatted and recognised as bytes and handed to a Recorder.
Frames to the server are masked with an all-zero key, which RFC 6455 allows (the
key must be present, not secret), so masking costs nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import ssl
import time
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import orjson

SOCKET_IO_PATH = "/socket.io/?EIO=4&transport=websocket"
# A server's HTTP answer to the upgrade is a few hundred bytes; more is not a websocket.
MAX_HANDSHAKE_BYTES = 16 * 1024
# Packets are small here; the cap only stops a broken server from filling memory.
MAX_FRAME_BYTES = 16 * 1024 * 1024
_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_ZERO_MASK = b"\x00\x00\x00\x00"

# websocket opcodes
_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_EVENT = ord("2")
_ACK = ord("3")
_CONNECT = ord("0")
_DISCONNECT = ord("1")
_CONNECT_ERROR = ord("4")
_MESSAGE = ord("4")
_OPEN = ord("0")
_PING_PACKET = ord("2")
_CLOSE_PACKET = ord("1")
_MESSAGE_NEW = b'42["message:new",'
_PRESENCE = b'42["user:'


class ConnectFailed(Exception):
    """The server refused or dropped the connection before it was ready; `reason`
    is an error code (AUTH_FAILED, …) or what went wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Recorder(Protocol):
    """Where a client reports what it receives (worker.py implements it)."""

    def message_new(self, data: bytes) -> None: ...

    def message_acked(self, entry: tuple[int, int, int, int], reply: Any) -> None: ...

    def error_event(self, payload: Any) -> None: ...

    def other_event(self, data: bytes) -> None: ...

    def disconnected(self, client: WireClient) -> None: ...


def websocket_url(url: str) -> str:
    """The Socket.IO websocket endpoint under a server's base URL."""
    base = url.rstrip("/")
    if base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    elif base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    return base + SOCKET_IO_PATH


def text_frame(payload: bytes) -> bytes:
    """A final, masked (zero key) text frame."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, 0x80 | size))
    elif size < 65536:
        header = bytes((0x81, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + _ZERO_MASK + payload


def _control_frame(opcode: int, payload: bytes = b"") -> bytes:
    return bytes((0x80 | opcode, 0x80 | len(payload))) + _ZERO_MASK + payload[:125]


def _code(payload: Any) -> str:
    """The error code in an ack's or event's payload, else a short description."""
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return str(error["code"])
        data = payload.get("data")
        if isinstance(data, dict) and isinstance(data.get("code"), str):
            return str(data["code"])
    return "UNKNOWN"


def reply_code(reply: Any) -> str | None:
    """None for `{ok: true}`, else the error code of a failed ack."""
    if isinstance(reply, dict) and reply.get("ok") is True:
        return None
    return _code(reply)


class WireClient(asyncio.Protocol):
    """One Socket.IO connection. `open` connects and authenticates in the handshake,
    `call` emits with an ack and waits for it, `send_message` emits `message:send`
    with its ack accounted by the Recorder."""

    def __init__(self, index: int, auth: str, group: int, conversation_id: int,
                 recorder: Recorder) -> None:
        self.index = index
        self.auth = auth
        self.group = group
        self.conversation_id = conversation_id
        self.recorder = recorder
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.closed = False
        self.paused = False  # the server is not reading as fast as we write
        self.writes_while_paused = 0
        # ack id -> (phase, message key, group, send time in ns) of a message:send
        self.pending: dict[int, tuple[int, int, int, int]] = {}
        # ack id -> the future of a call(); a socket that closes answers DISCONNECTED
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._next_ack = 0
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._fragments_text = False
        self._upgraded = False
        self._request = b""
        self._accept = b""
        self._reason = "closed by the server"
        loop = asyncio.get_running_loop()
        # Each handshake step resolves to None when it happened, or to why it failed.
        self._opened: asyncio.Future[str | None] = loop.create_future()
        self._connected: asyncio.Future[str | None] = loop.create_future()
        self._authenticated: asyncio.Future[str | None] = loop.create_future()

    # -- handshake ----------------------------------------------------------------------------

    async def open(self, ws_url: str, ssl_context: ssl.SSLContext | None = None) -> None:
        """Connect, authenticate with the token in the handshake; ConnectFailed if not."""
        parts = urlsplit(ws_url)
        secure = parts.scheme == "wss"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if secure else 80)
        key = base64.b64encode(os.urandom(16))
        self._accept = base64.b64encode(hashlib.sha1(key + _WEBSOCKET_GUID).digest())
        target = parts.path + ("?" + parts.query if parts.query else "")
        self._request = (
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        if secure and ssl_context is None:
            ssl_context = ssl.create_default_context()
        try:
            await asyncio.get_running_loop().create_connection(
                lambda: self, host, port, ssl=ssl_context if secure else None)
        except OSError as exc:
            raise ConnectFailed(type(exc).__name__) from None
        await self._step(self._opened)
        self._send(b"40" + orjson.dumps({"token": self.auth}))
        await self._step(self._connected)
        await self._step(self._authenticated)

    @staticmethod
    async def _step(future: asyncio.Future[str | None]) -> None:
        failure = await future
        if failure is not None:
            raise ConnectFailed(failure)

    def _fail(self, reason: str) -> None:
        for future in (self._opened, self._connected, self._authenticated):
            if not future.done():
                future.set_result(reason)

    # -- sending ------------------------------------------------------------------------------

    async def call(self, event: str, data: Any) -> Any:
        """Emit `event` with an ack id; the ack's first argument."""
        ack_id = self._next_ack
        self._next_ack += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[ack_id] = future
        self._send(b"42%d" % ack_id + orjson.dumps([event, data]))
        return await future

    def send_message(self, phase: int, key: int, run_id: bytes) -> None:
        """`message:send` whose text carries the phase and the send time (monotonic ns,
        one clock for every process on Linux), so each receiver measures its latency."""
        ack_id = self._next_ack
        self._next_ack += 1
        now = time.monotonic_ns()
        self.pending[ack_id] = (phase, key, self.group, now)
        self._send(
            b'42%d["message:send",{"conversationId":%d,"text":"%d:%d","messageId":"%s.%d"}]'
            % (ack_id, self.conversation_id, phase, now, run_id, key)
        )

    def _send(self, packet: bytes) -> None:
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            raise ConnectionResetError("websocket closed")
        if self.paused:
            self.writes_while_paused += 1
        transport.write(text_frame(packet))

    def close(self) -> None:
        """Say goodbye (Socket.IO DISCONNECT, websocket close) and drop the connection."""
        self.closing = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self._upgraded:
                transport.write(text_frame(b"41") + _control_frame(_CLOSE, b"\x03\xe8"))
            transport.close()
        self._fail("closed")

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._request)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is not None:
            self._reason = type(exc).__name__
        self._fail(self._reason)
        for future in self._calls.values():
            if not future.done():
                future.set_result({"ok": False, "error": {"code": "DISCONNECTED"}})
        self._calls.clear()
        # A socket refused in its handshake is a connect failure, not a disconnect.
        authenticated = self._authenticated.done() and self._authenticated.result() is None
        if not self.closing and authenticated:
            self.recorder.disconnected(self)

    def _abort(self, reason: str) -> None:
        self._reason = reason
        self.closed = True  # nothing more is read or written on it
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HANDSHAKE_BYTES:
                    self._abort("no websocket upgrade")
                self._buffer = buffer
                return
            if not self._upgrade(buffer[:end]):
                return
            buffer = buffer[end + 4:]
            self._upgraded = True
        size = len(buffer)
        position = 0
        message_new = self.recorder.message_new
        while size - position >= 2:
            first = buffer[position]
            length = buffer[position + 1]
            if length & 0x80:
                self._abort("the server masked a frame")
                return
            if length < 126:
                start = position + 2
            elif length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(buffer[position + 2:position + 4], "big")
                start = position + 4
            else:
                if size - position < 10:
                    break
                length = int.from_bytes(buffer[position + 2:position + 10], "big")
                start = position + 10
                if length > MAX_FRAME_BYTES:
                    self._abort("frame too large")
                    return
            end = start + length
            if end > size:
                break
            position = end
            if first == 0x81:  # a whole text frame: the hot path
                payload = buffer[start:end]
                if payload.startswith(_MESSAGE_NEW):
                    message_new(payload)
                else:
                    self._packet(payload)
            else:
                self._frame(first, first & 0x0F, buffer[start:end])
            if self.closed:
                return
        self._buffer = buffer[position:] if position < size else b""

    def _upgrade(self, head: bytes) -> bool:
        status_line, _, headers = head.partition(b"\r\n")
        fields = status_line.split(b" ", 2)
        if len(fields) < 2 or fields[1] != b"101":
            code = fields[1].decode(errors="replace") if len(fields) > 1 else "?"
            self._abort(f"HTTP {code}")
            return False
        for line in headers.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-accept" and value.strip() != (
                    self._accept):
                self._abort("bad Sec-WebSocket-Accept")
                return False
        return True

    def _frame(self, first: int, opcode: int, payload: bytes) -> None:
        """Everything but a whole text frame: fragments, pings, close."""
        if opcode in (_TEXT, _BINARY, _CONTINUATION):
            self._fragments.append(payload)
            if first & 0x80:
                whole = b"".join(self._fragments)
                text = opcode == _TEXT or (opcode == _CONTINUATION and self._fragments_text)
                self._fragments = []
                if text:
                    self._packet(whole)
            elif opcode != _CONTINUATION:
                self._fragments_text = opcode == _TEXT
        elif opcode == _PING:
            if self.transport is not None:
                self.transport.write(_control_frame(_PONG, payload))
        elif opcode == _CLOSE:
            self._reason = "closed by the server"
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(_control_frame(_CLOSE, payload[:2]))
                self.transport.close()

    # -- Engine.IO / Socket.IO packets --------------------------------------------------------

    def _packet(self, data: bytes) -> None:
        if not data:
            return
        first = data[0]
        if first == _MESSAGE and len(data) > 1:
            kind = data[1]
            if kind == _EVENT:
                if data.startswith(_MESSAGE_NEW):
                    self.recorder.message_new(data)
                elif data.startswith(_PRESENCE):
                    self.recorder.other_event(data)
                else:
                    self._event(data)
            elif kind == _ACK:
                self._ack(data)
            elif kind == _CONNECT:
                if not self._connected.done():
                    self._connected.set_result(None)
            elif kind == _CONNECT_ERROR:
                reason = _code(orjson.loads(data[2:]))
                self._fail(reason)
                self._abort(reason)
            elif kind == _DISCONNECT:
                self._abort("disconnected by the server")
        elif first == _PING_PACKET:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(text_frame(b"3"))
        elif first == _OPEN:
            if not self._opened.done():
                self._opened.set_result(None)
        elif first == _CLOSE_PACKET:
            self._abort("closed by the server")

    def _event(self, data: bytes) -> None:
        packet = orjson.loads(data[2:])
        name = packet[0] if isinstance(packet, list) and packet else None
        payload = packet[1] if isinstance(packet, list) and len(packet) > 1 else None
        if name == "authenticated":
            if not self._authenticated.done():
                self._authenticated.set_result(None)
        elif name == "error":
            if not self._authenticated.done() and _code(payload) == "AUTH_FAILED":
                self._fail("AUTH_FAILED")
            self.recorder.error_event(payload)
        else:
            self.recorder.other_event(data)

    def _ack(self, data: bytes) -> None:
        start = data.find(b"[", 2)
        if start < 0:
            return
        ack_id = int(data[2:start])
        args = orjson.loads(data[start:])
        reply = args[0] if isinstance(args, list) and args else None
        entry = self.pending.pop(ack_id, None)
        if entry is not None:
            self.recorder.message_acked(entry, reply)
            return
        future = self._calls.pop(ack_id, None)
        if future is not None and not future.done():
            future.set_result(reply)
