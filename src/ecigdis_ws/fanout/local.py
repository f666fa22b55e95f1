"""Fan-out through python-socketio's manager: in-process rooms on a single node."""

from __future__ import annotations

from typing import Any

import socketio

from ecigdis_ws.observability.metrics import Metrics

NAMESPACE = "/"


class SocketIOFanout:
    def __init__(self, sio: socketio.AsyncServer, metrics: Metrics) -> None:
        self._sio = sio
        self._metrics = metrics

    def _local_recipients(self, room: str, skip_sid: str | None) -> int:
        members = self._sio.manager.rooms.get(NAMESPACE, {}).get(room, {})
        return len(members) - (1 if skip_sid is not None and skip_sid in members else 0)

    async def emit(
        self, event: str, data: Any, *, room: str, skip_sid: str | None = None
    ) -> None:
        self._metrics.deliveries.inc(self._local_recipients(room, skip_sid))
        await self._sio.emit(event, data, room=room, skip_sid=skip_sid, namespace=NAMESPACE)

    def enter_room(self, sid: str, room: str) -> None:
        self._sio.manager.basic_enter_room(sid, NAMESPACE, room)

    def leave_room(self, sid: str, room: str) -> None:
        self._sio.manager.basic_leave_room(sid, NAMESPACE, room)

    def in_room(self, sid: str, room: str) -> bool:
        return sid in self._sio.manager.rooms.get(NAMESPACE, {}).get(room, {})

    async def disconnect(self, sid: str) -> None:
        await self._sio.disconnect(sid, namespace=NAMESPACE)
