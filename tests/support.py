"""Test helpers: a real server on a loopback port and real Socket.IO clients."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web

from ecigdis_ws.app import create_app
from ecigdis_ws.clock import ManualClock
from ecigdis_ws.domain import UserId
from ecigdis_ws.ops.socket_client import RecordingClient
from ecigdis_ws.services.auth import mint_token
from ecigdis_ws.services.container import ChatServices
from ecigdis_ws.settings import Settings, load_settings
from ecigdis_ws.storage.base import Storage
from ecigdis_ws.storage.sql import SqlStorage
from ecigdis_ws.transport.app_keys import SERVICES
from ecigdis_ws.transport.socketio_overrides.server import SOCKET_SERVER

WAIT_S = 5.0


def get_json(url: str, timeout_s: float = 2.0) -> tuple[int, Any]:
    """GET a server started as a process (blocking): its status and JSON body,
    an error status's body included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def free_port() -> int:
    """A port nothing listens on right now, for a server started as a process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_until(condition: Callable[[], bool], within: float = WAIT_S) -> None:
    """Poll state that has no event to wait on; `within` only bounds a failure."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the state has no event to await
            await asyncio.sleep(0.01)


async def set_role(storage: Storage, conversation_id: int, user_id: UserId, role: str) -> None:
    """Give a member a role (owner, admin, member): no operation changes roles yet
    (the creator of a REST create is its owner), so tests set them in the table."""
    assert isinstance(storage, SqlStorage)
    async with storage.engine.transaction() as tx:
        changed, _ = await tx.execute(
            storage.tables.sql(
                "UPDATE {p}members SET role = ? WHERE conversation_id = ? AND user_id = ?"
            ),
            (role, conversation_id, str(user_id)),
        )
    assert changed == 1, f"user {user_id} is no member of conversation {conversation_id}"


def test_settings(tmp_path: Path, **env: str) -> Settings:
    base = {
        "NODE_ENV": "test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'chat.db'}",
        "MIGRATE_ON_START": "true",
        "JWT_SECRET": "test-secret-that-is-long-enough-for-production-use",
        "LOG_LEVEL": "warning",
    }
    base.update(env)
    return load_settings(base, dotenv_path=None)


def _deliver_in_order(sio: socketio.AsyncClient) -> None:
    """Handle each received packet before reading the next, as socket.io-client does.

    python-engineio's client runs every incoming message in a task of its own, so
    two packets that arrived in order can reach the handlers out of order; tests of
    the server's ordering need the order the server sent.
    """
    eio = sio.eio
    dispatch = eio._trigger_event

    async def inline(event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "message":
            kwargs["run_async"] = False
        return await dispatch(event, *args, **kwargs)

    eio._trigger_event = inline


class ChatClient(RecordingClient):
    """python-socketio's AsyncClient, recording every event it receives
    (ecigdis_ws.ops.socket_client, which `ecigdis-ws check` uses too), handling the
    packets in the order they arrived, with WAIT_S bounding every call and wait."""

    def __init__(self, url: str) -> None:
        sio = socketio.AsyncClient(reconnection=False)
        _deliver_in_order(sio)
        super().__init__(url, sio, WAIT_S)


@dataclasses.dataclass
class RunningServer:
    url: str
    port: int
    app: web.Application
    clock: ManualClock
    settings: Settings
    clients: list[ChatClient] = dataclasses.field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def http_connections(self) -> int:
        """TCP connections the HTTP server holds open (websockets included)."""
        assert self.runner is not None and self.runner.server is not None
        return len(self.runner.server.connections)

    @property
    def chat(self) -> ChatServices:
        return self.app[SERVICES]

    def token(self, user_id: UserId, name: str | None = None, ttl_s: float = 3600) -> str:
        return mint_token(self.settings, self.clock, user_id, name or f"user{user_id}", ttl_s)

    async def client(
        self, user_id: UserId | None = None, name: str | None = None, **connect: Any
    ) -> ChatClient:
        """A connected client; authenticated in the handshake when user_id is given."""
        client = ChatClient(self.url)
        self.clients.append(client)
        token = self.token(user_id, name) if user_id is not None else None
        await client.connect(token=token, **connect)
        if user_id is not None:
            await client.wait_for("authenticated")
        else:
            await client.wait_for("connected")
        return client

    async def conversation(self, *members: UserId, title: str = "test") -> int:
        now_ms = int(self.clock.now() * 1000)
        return await self.chat.storage.conversations.create_conversation(
            title, list(members), now_ms
        )

    async def wait_until(self, condition: Callable[[], bool], within: float = WAIT_S) -> None:
        """Poll server state that has no event to wait on (e.g. a disconnect handled)."""
        await wait_until(condition, within)

    async def disconnect(self, client: ChatClient) -> None:
        """Close a client and wait until the server has handled the disconnect."""
        sid = client.sio.get_sid()
        await client.close()
        await self.wait_until(lambda: self.chat.sessions.get(sid) is None)

    async def advance(self, seconds: float) -> None:
        """Move the injected clock and let the work its timers started finish.

        Websocket heartbeats run on this clock too, and a client answers a PING
        in real time: so time moves in steps shorter than the ping timeout, and
        after each step the clients' PONGs are awaited, as a live client's would
        arrive. (A client that never answers is closed once its timeout passes.)
        """
        step = self.settings.ping_timeout_ms / 1000 / 2
        sio = self.app[SOCKET_SERVER]
        while seconds > 0:
            moved = min(step, seconds)
            self.clock.advance(moved)
            seconds -= moved
            await self.chat.tasks.drain()
            if sio.pongs_awaited:
                with contextlib.suppress(TimeoutError):
                    await self.wait_until(lambda: sio.pongs_awaited == 0)


@asynccontextmanager
async def running_server(tmp_path: Path, **env: str) -> AsyncIterator[RunningServer]:
    settings = test_settings(tmp_path, **env)
    clock = ManualClock()
    app = create_app(settings, clock)  # with serve's connection deadlines (handler_args)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server = RunningServer(f"http://127.0.0.1:{port}", port, app, clock, settings,
                           runner=runner)
    try:
        yield server
    finally:
        for client in server.clients:
            await client.close()
        await runner.cleanup()


# What asyncio logs when the garbage collector finds a test's own aiohttp client
# session left open (python-engineio's client keeps one per connection): the test
# process's housekeeping, not something the server logged.
_CLIENT_LEFTOVERS = ("Unclosed client session", "Unclosed connector")


def errors_counted(server: RunningServer, code: str) -> float:
    """ecigdis_ws_errors_total{code}: error answers the server counted, either transport."""
    value = server.chat.metrics.registry.get_sample_value(
        "ecigdis_ws_errors_total", {"code": code}
    )
    return value or 0.0


def server_log_problems(records: list[logging.LogRecord], level: int = logging.ERROR) -> list[str]:
    """Messages of log records at `level` or above, or with a traceback, that the
    server could have written."""
    return [
        record.getMessage() for record in records
        if (record.levelno >= level or record.exc_info)
        and not (record.name == "asyncio" and record.getMessage().startswith(_CLIENT_LEFTOVERS))
    ]


@dataclasses.dataclass
class Disconnect:
    """How a socket's connection ended, as python-socketio reported it."""

    reason: str
    engineio_state: str  # the Engine.IO client's state when the disconnect handler ran
    at: float  # time.monotonic()


def record_disconnects(client: ChatClient) -> list[Disconnect]:
    """Replace ChatClient's disconnect handler by one that also keeps the reason.

    python-socketio reports an Engine.IO CLOSE packet (which socket.io-client calls
    "transport close") as "server disconnect", the same words as a Socket.IO
    namespace DISCONNECT; only the latter leaves Engine.IO "connected", so the
    Engine.IO state tells them apart.
    """
    seen: list[Disconnect] = []

    async def on_disconnect(reason: str = "") -> None:
        seen.append(Disconnect(str(reason), str(client.sio.eio.state), time.monotonic()))
        client.disconnected.set()

    client.sio.on("disconnect", on_disconnect)
    return seen


def transport_closed(disconnect: Disconnect) -> bool:
    return (disconnect.reason in ("server disconnect", "transport error")
            and disconnect.engineio_state != "connected")
