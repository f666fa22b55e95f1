"""The asyncio side of one bench client: a thin adapter over connection.py.

Each client is an asyncio Protocol on its own TCP (or TLS) connection to
`URL/socket.io/?EIO=4&transport=websocket`. It hands what it reads to its sans-I/O
ClientConnection, writes the frames it comes up with, and turns the handshake
into futures `open` awaits. No task, queue or future per packet: on this machine
aiohttp's `ws_connect` client cost 4.2 µs of CPU per small frame received one at a
time over 500 sockets, this 2.6 µs, and the generator shares two cores with the
server it measures.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from ecigdis_ws.bench.connection import ClientConnection
from ecigdis_ws.bench.wire import PendingChange, PendingSend, Recorder


class ConnectFailed(Exception):
    """The server refused or dropped the connection before it was ready; `reason`
    is an error code (AUTH_FAILED, …) or what went wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ClientRecorder(Recorder, Protocol):
    """A Recorder that also hears of connections the server dropped (worker.py)."""

    def disconnected(self, client: WireClient) -> None: ...


class WireClient(asyncio.Protocol):
    """One Socket.IO connection. `open` connects and authenticates in the handshake,
    `call` emits with an ack and waits for it, `send_message` emits `message:send`
    with its ack accounted by the Recorder. Implements wire.Session."""

    def __init__(self, index: int, auth: str, group: int, conversation_id: int,
                 recorder: ClientRecorder) -> None:
        self.index = index
        self.auth = auth
        self.group = group
        self.conversation_id = conversation_id
        self.recorder = recorder
        self.connection: ClientConnection | None = None
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.closed = False
        self.paused = False  # the server is not reading as fast as we write
        self.writes_while_paused = 0
        # ack id -> the message:send it answers (the connection's, once open)
        self.pending: dict[int, PendingSend] = {}
        # ack id -> the message:edit or message:delete it answers (the connection's)
        self.changes: dict[int, PendingChange] = {}
        # ack id -> the future of a call(); a socket that closes answers DISCONNECTED
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._reason = "closed by the server"
        # The connection's receive_data once open: data_received's hot path in one call
        self._receive: Callable[[bytes], bool] = lambda data: False
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
        target = parts.path + ("?" + parts.query if parts.query else "")
        self.connection = ClientConnection(
            parts.netloc, target, base64.b64encode(os.urandom(16)), self.recorder, self)
        self.pending = self.connection.pending
        self.changes = self.connection.changes
        self._receive = self.connection.receive_data
        if secure and ssl_context is None:
            ssl_context = ssl.create_default_context()
        try:
            await asyncio.get_running_loop().create_connection(
                lambda: self, parts.hostname or "127.0.0.1",
                parts.port or (443 if secure else 80), ssl=ssl_context if secure else None)
        except OSError as exc:
            raise ConnectFailed(type(exc).__name__) from None
        await self._step(self._opened)
        self._write(self.connection.authenticate(self.auth))
        await self._step(self._connected)
        await self._step(self._authenticated)

    @staticmethod
    async def _step(future: asyncio.Future[str | None]) -> None:
        failure = await future
        if failure is not None:
            raise ConnectFailed(failure)

    @staticmethod
    def _done(future: asyncio.Future[str | None]) -> None:
        if not future.done():
            future.set_result(None)

    def opened(self) -> None:
        self._done(self._opened)

    def connected(self) -> None:
        self._done(self._connected)

    def authenticated(self) -> None:
        self._done(self._authenticated)

    def refused(self, reason: str) -> None:
        for future in (self._opened, self._connected, self._authenticated):
            if not future.done():
                future.set_result(reason)

    def answered(self, ack_id: int, reply: Any) -> None:
        future = self._calls.pop(ack_id, None)
        if future is not None and not future.done():
            future.set_result(reply)

    # -- sending ------------------------------------------------------------------------------

    async def call(self, event: str, data: Any) -> Any:
        """Emit `event` with an ack id; the ack's first argument."""
        connection = self._open_connection()
        ack_id, frame = connection.call(event, data)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[ack_id] = future
        self._write(frame)
        return await future

    def send_message(self, phase: int, key: int, run_id: bytes) -> None:
        """`message:send` stamped with the phase and the send time (connection.py)."""
        connection = self.connection
        if connection is None:
            raise ConnectionResetError("websocket closed")
        self._write(connection.message_send(
            self.conversation_id, self.group, phase, key, run_id, time.monotonic_ns()))

    def change_message(self, kind: int, phase: int, server_id: int) -> None:
        """`message:edit` or `message:delete` of its own message `server_id`, stamped
        with the emit time (connection.py)."""
        connection = self.connection
        if connection is None:
            raise ConnectionResetError("websocket closed")
        self._write(connection.message_change(
            kind, self.conversation_id, self.group, phase, server_id, time.monotonic_ns()))

    def _open_connection(self) -> ClientConnection:
        if self.connection is None:
            raise ConnectionResetError("websocket closed")
        return self.connection

    def _write(self, frames: bytes) -> None:
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            raise ConnectionResetError("websocket closed")
        if self.paused:
            self.writes_while_paused += 1
        transport.write(frames)

    def close(self) -> None:
        """Say goodbye (Socket.IO DISCONNECT, websocket close) and drop the connection."""
        self.closing = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self.connection is not None:
                transport.write(self.connection.goodbye())
            transport.close()
        self.refused("closed")

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._open_connection().request)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is not None:
            self._reason = type(exc).__name__
        self.refused(self._reason)
        for future in self._calls.values():
            if not future.done():
                future.set_result({"ok": False, "error": {"code": "DISCONNECTED"}})
        self._calls.clear()
        # A socket refused in its handshake is a connect failure, not a disconnect.
        authenticated = self._authenticated.done() and self._authenticated.result() is None
        if not self.closing and authenticated:
            self.recorder.disconnected(self)

    def data_received(self, data: bytes) -> None:
        if self._receive(data):
            self._attend()

    def _attend(self) -> None:
        """Write what the connection owes the server; drop it if it is done."""
        connection, transport = self.connection, self.transport
        if connection is None or transport is None:
            return
        owed = connection.data_to_send()
        if owed and not transport.is_closing():
            transport.write(owed)
        if connection.failure is not None:
            self._reason = connection.failure
            self.closed = True  # nothing more is read or written on it
            transport.abort()
        elif connection.close_received:
            transport.close()
