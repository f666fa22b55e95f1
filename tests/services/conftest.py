"""Service tests: every service built once, as the app builds them, on the real
parts that need no network.

- The injected clock is a `ManualClock`: a test moves time with `advance`.
- Storage is the real SQLite storage in the test's temporary directory, migrated.
- Fan-out is the real `SocketIOFanout` on python-socketio's room bookkeeping
  (`DirectEmitManager`). Only the last hop is replaced: instead of writing to an
  Engine.IO socket (there is none), `RecordingManager` notes what each socket id
  in the room would have received, and which sockets the server disconnected.
- Presence and typing use the single-node stores (no Redis).

Sockets are ids registered with the manager, as python-socketio registers a
connecting client; `harness.user(7)` is one authenticated socket of user 7.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ecigdis_ws.app import build_socketio
from ecigdis_ws.clock import ManualClock
from ecigdis_ws.cluster.presence import LocalPresenceRegistry
from ecigdis_ws.cluster.typing_state import LocalTypingStore
from ecigdis_ws.domain import Actor, ClientMessageId, SendResult, UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.fanout.notifier import DeliveryNotifier
from ecigdis_ws.observability.metrics import Metrics
from ecigdis_ws.services.auth import mint_token
from ecigdis_ws.services.container import ChatServices, Gates
from ecigdis_ws.settings import Settings
from ecigdis_ws.storage.base import Storage
from ecigdis_ws.storage.factory import open_storage
from ecigdis_ws.transport.socketio_overrides.managers import (
    NAMESPACE,
    DirectEmitManager,
    SocketIOFanout,
)
from tests.support import test_settings


class RecordingManager(DirectEmitManager):
    """python-socketio's rooms; each delivery is recorded per recipient socket."""

    def __init__(self, notifier: DeliveryNotifier) -> None:
        super().__init__(notifier=notifier)
        self.inbox: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        self.disconnected: list[str] = []

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | list[str] | None = None,
        skip_sid: str | list[str] | None = None,
        callback: Any = None,
        to: str | None = None,
        **kwargs: Any,
    ) -> None:
        if self.notifier is not None:  # (as DirectEmitManager.emit tells it)
            self.notifier.delivered(event, data, to or room)
        skipped = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        for sid, _eio_sid in self.get_participants(namespace, to or room):
            if sid not in skipped:
                self.inbox[sid].append((event, data))

    async def disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        self.disconnected.append(sid)
        await super().disconnect(sid, namespace, **kwargs)


class ServiceHarness:
    """The services of one node, and the sockets a test opens on it."""

    def __init__(
        self, settings: Settings, clock: ManualClock, storage: Storage, manager: RecordingManager,
        chat: ChatServices,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.storage = storage
        self.manager = manager
        self.chat = chat
        self._eio_ids = itertools.count(1)

    @property
    def now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    def token(self, user_id: UserId, name: str | None = None, ttl_s: float = 3600) -> str:
        return mint_token(self.settings, self.clock, user_id, name or f"user{user_id}", ttl_s)

    async def socket(self, ip: str = "127.0.0.1") -> str:
        """A connected, unauthenticated socket: its connection admitted (as at an
        Engine.IO handshake), then its session opened (as at the Socket.IO CONNECT)."""
        connection = f"eio-{next(self._eio_ids)}"
        self.chat.admission.arrived(connection, ip)
        sid: str = await self.manager.connect(connection, NAMESPACE)
        self.chat.sessions.open(sid, connection)
        return sid

    async def user(self, user_id: UserId, name: str | None = None) -> str:
        """A socket authenticated as `user_id` (its user:online has been announced)."""
        sid = await self.socket()
        await self.chat.sessions.authenticate(sid, self.token(user_id, name))
        return sid

    def actor(self, sid: str) -> Actor:
        """Who an authenticated socket acts as."""
        session = self.chat.sessions.get(sid)
        if session is None:
            raise ChatError(ErrorCode.UNAUTHENTICATED, "authenticate first")
        return session.actor()

    async def join(self, conversation: int, *sids: str) -> None:
        """Each socket joins the conversation's room (no replay)."""
        for sid in sids:
            await self.chat.conversations.join(self.actor(sid), conversation, None)

    async def send(
        self, sid: str, conversation: int, text: str, client_id: ClientMessageId | None = None
    ) -> SendResult:
        """message:send from the socket (the client id defaults to the text)."""
        return await self.chat.messages.send(
            self.actor(sid), conversation, text, text if client_id is None else client_id
        )

    async def close(self, sid: str) -> None:
        """The socket went away, as the transport reports a disconnect."""
        connection = self.manager.eio_sid_from_sid(sid, NAMESPACE)
        await self.chat.sessions.close(sid)
        if self.manager.is_connected(sid, NAMESPACE):
            await self.manager.disconnect(sid, NAMESPACE)
        self.chat.admission.closed(connection)

    async def conversation(self, *members: UserId, title: str = "test") -> int:
        return await self.storage.conversations.create_conversation(
            title, list(members), self.now_ms
        )

    def received(self, sid: str, event: str | None = None) -> list[Any]:
        """What socket `sid` was sent, oldest first (payloads of `event` only, if given)."""
        inbox = self.manager.inbox.get(sid, [])
        if event is None:
            return list(inbox)
        return [data for name, data in inbox if name == event]

    def forget_received(self) -> None:
        self.manager.inbox.clear()

    async def advance(self, seconds: float) -> None:
        """Move the clock and let the work its timers started finish."""
        self.clock.advance(seconds)
        await self.chat.tasks.drain()


@asynccontextmanager
async def service_harness(tmp_path: Path, **env: str) -> AsyncIterator[ServiceHarness]:
    settings = test_settings(tmp_path, **env)
    clock = ManualClock()
    notifier = DeliveryNotifier()
    manager = RecordingManager(notifier)
    metrics = Metrics()
    sio = build_socketio(settings, clock, metrics, manager)
    storage = await open_storage(settings, clock)
    await storage.migrate()
    fanout = SocketIOFanout(sio)
    chat = ChatServices.build(  # as the composition root (app.py) builds them
        settings=settings, clock=clock, storage=storage, fanout=fanout, metrics=metrics,
        presence_registry=LocalPresenceRegistry(), typing_store=LocalTypingStore(),
        notifier=notifier,
        gates=Gates.build(settings=settings, clock=clock, metrics=metrics, fanout=fanout,
                          close_connection=sio.close_unadmitted),
    )
    await chat.presence.start()
    try:
        yield ServiceHarness(settings, clock, storage, manager, chat)
    finally:
        await chat.presence.stop()
        await chat.tasks.cancel_all()
        await storage.close()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[ServiceHarness]:
    """The services with default settings."""
    async with service_harness(tmp_path) as built:
        yield built


@pytest.fixture
def make_harness(
    tmp_path: Path,
) -> Callable[..., AbstractAsyncContextManager[ServiceHarness]]:
    """Build the services with settings overridden as environment variables."""

    def build(**env: str) -> AbstractAsyncContextManager[ServiceHarness]:
        return service_harness(tmp_path, **env)

    return build


async def make_database_read_only(harness: ServiceHarness) -> None:
    """A real fault: SQLite refuses every write from now on ('readonly': unavailable)."""
    await harness.storage.engine.execute("PRAGMA query_only = ON")  # type: ignore[attr-defined]
