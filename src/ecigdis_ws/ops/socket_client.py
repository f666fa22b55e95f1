"""A Socket.IO client that keeps every event the server sent, so a caller can wait for one.

`ecigdis-ws check` goes through a server's steps with it; the tests' `ChatClient`
(tests/support.py) is one too, so both wait for events the same way.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import socketio


class RecordingClient:
    """python-socketio's AsyncClient, recording every event it receives: `events` by
    name, `sequence` the names in the order they arrived, `connect_error` the data of
    a refused CONNECT, and `disconnected` once the connection ended.

    The AsyncClient is the caller's, built with the options it needs (an HTTP
    session, timeouts); `wait_s` bounds every call and wait not told otherwise.
    """

    def __init__(self, url: str, sio: socketio.AsyncClient, wait_s: float) -> None:
        self.url = url
        self.sio = sio
        self.wait_s = wait_s
        self.events: dict[str, list[Any]] = defaultdict(list)
        self.sequence: list[str] = []  # event names in the order they arrived
        self.connect_error: Any = None
        self.disconnected = asyncio.Event()
        self.disconnect_reason: tuple[Any, ...] = ()
        self._changed = asyncio.Condition()
        sio.on("*", self._record)
        sio.on("connect_error", self._on_connect_error)
        sio.on("disconnect", self._on_disconnect)

    async def _record(self, event: str, *args: Any) -> None:
        self.events[event].append(args[0] if len(args) == 1 else list(args))
        self.sequence.append(event)
        async with self._changed:
            self._changed.notify_all()

    async def _on_connect_error(self, data: Any = None) -> None:
        self.connect_error = data

    async def _on_disconnect(self, *args: Any) -> None:
        self.disconnect_reason = args  # (python-socketio's reason, when it gives one)
        self.disconnected.set()

    async def connect(
        self,
        token: str | None = None,
        transports: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Connect (websocket only unless told), with `token` in the handshake if given."""
        await self.sio.connect(
            self.url,
            auth={"token": token} if token is not None else None,
            transports=transports or ["websocket"],
            headers=headers or {},
            wait_timeout=self.wait_s,
        )

    async def call(self, event: str, data: Any = None) -> Any:
        """Emit `event` (with `data`, if any) and wait for its ack."""
        if data is None:
            return await self.sio.call(event, timeout=self.wait_s)
        return await self.sio.call(event, data, timeout=self.wait_s)

    async def wait_for(
        self,
        event: str,
        where: Callable[[Any], bool] = lambda _: True,
        count: int = 1,
        within: float | None = None,
    ) -> list[Any]:
        """Wait until `count` received `event`s match `where`; return the matches.
        TimeoutError after `within` seconds (`wait_s` unless told)."""

        def matches() -> list[Any]:
            return [item for item in self.events[event] if where(item)]

        async with asyncio.timeout(self.wait_s if within is None else within), self._changed:
            await self._changed.wait_for(lambda: len(matches()) >= count)
        return matches()

    async def wait_disconnected(self, within: float | None = None) -> None:
        """Wait until the connection has ended (`within` only bounds a failure)."""
        async with asyncio.timeout(self.wait_s if within is None else within):
            await self.disconnected.wait()

    def received(self, event: str) -> list[Any]:
        return list(self.events[event])

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
