"""Fan-out through python-socketio's manager: in-process rooms on a single node."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import socketio
from engineio import packet as eio_packet
from prometheus_client import Counter

from ecigdis_ws import json_codec
from ecigdis_ws.fanout.base import CONVERSATION_ROOM_PREFIX
from ecigdis_ws.fanout.notifier import DeliveryNotifier
from ecigdis_ws.transport.socketio_overrides.websocket import DirectSocket, message_frame

NAMESPACE = "/"


class DirectEmitManager(socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's room bookkeeping, with emits that cost no task per recipient.

    python-socketio's AsyncManager starts a task per recipient and waits for them
    all. Here an emit without a callback is encoded once; a websocket recipient
    gets that same frame written to its connection (see transport/socketio_overrides/websocket.py)
    and a polling one the same Engine.IO packet on its queue, in a plain loop.
    The Redis manager puts this class under its pub/sub layer, so deliveries
    that arrive from other nodes take the same path.
    """

    # Told (event, data, room) of every emit this node delivers, whichever node
    # sent it (the REST long-poll and the server API listen).
    notifier: DeliveryNotifier | None = None
    # ecigdis_ws_deliveries_total, counted here, where every event to a socket of
    # this node is written: its own emits and those that came from other nodes alike.
    deliveries: Counter | None = None

    def __init__(
        self,
        *args: Any,
        notifier: DeliveryNotifier | None = None,
        deliveries: Counter | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # (The Redis manager's own constructor sets both: python-socketio's pub/sub
        # managers call this one with no arguments.)
        self.notifier = self.notifier or notifier
        self.deliveries = self.deliveries or deliveries
        # Conversation rooms per socket, kept as sockets enter and leave (a
        # disconnect leaves every room through basic_leave_room): python-socketio
        # can only count them by walking every room.
        self.conversation_rooms: dict[str, int] = {}

    def basic_enter_room(self, sid: str, namespace: str, room: str | None,
                         eio_sid: str | None = None) -> None:
        counted = _is_conversation(room) and not self._in(sid, namespace, room)
        super().basic_enter_room(sid, namespace, room, eio_sid)
        if counted:
            self.conversation_rooms[sid] = self.conversation_rooms.get(sid, 0) + 1

    def basic_leave_room(self, sid: str, namespace: str, room: str | None) -> None:
        counted = _is_conversation(room) and self._in(sid, namespace, room)
        super().basic_leave_room(sid, namespace, room)
        if counted:
            left = self.conversation_rooms.pop(sid, 1) - 1
            if left:
                self.conversation_rooms[sid] = left

    def watch(self, rooms: Iterable[str]) -> Callable[[], None]:
        """One node hears every emit already (the Redis manager reads channels)."""
        return lambda: None

    async def room_ready(self, room: str) -> None:
        """(The Redis manager waits for the room's channel here.)"""

    def _in(self, sid: str, namespace: str, room: str | None) -> bool:
        return sid in self.rooms.get(namespace, {}).get(room, {})

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None = None,
        skip_sid: str | list[str] | None = None,
        callback: Any = None,
        to: str | None = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        if self.notifier is not None:
            self.notifier.delivered(event, data, room)
        encoded = None
        if callback is None and namespace == NAMESPACE and namespace in self.rooms:
            encoded = encode_event(event, data)
        skipped = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        if encoded is None:  # acks, other namespaces, binary: python-socketio's way
            self._count(sum(1 for sid, _ in self.get_participants(namespace, room)
                            if sid not in skipped))
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid,
                               callback=callback, **kwargs)
            return
        frame: bytes | None = None
        sockets = self.server.eio.sockets
        written = 0
        for sid, eio_sid in self.get_participants(namespace, room):  # (a copy)
            socket = sockets.get(eio_sid)
            if sid in skipped or socket is None or socket.closed:
                continue
            written += 1
            if isinstance(socket, DirectSocket) and socket.direct:
                frame = frame or message_frame(encoded)
                socket.write_frame(frame)
            else:
                await socket.send(eio_packet.Packet(eio_packet.MESSAGE, encoded))
        self._count(written)

    def _count(self, recipients: int) -> None:
        if self.deliveries is not None and recipients:
            self.deliveries.inc(recipients)


def _is_conversation(room: str | None) -> bool:
    """(python-socketio's own room of connected sockets is None.)"""
    return room is not None and room.startswith(CONVERSATION_ROOM_PREFIX)


def encode_event(event: str, data: Any) -> str | None:
    """A Socket.IO EVENT packet for the default namespace, as socket.io-parser
    writes it; None for data JSON cannot carry (binary attachments)."""
    args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
    try:
        return "2" + json_codec.dumps([event, *args])
    except (TypeError, ValueError):
        return None


class SocketIOFanout:
    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    async def emit(
        self, event: str, data: Any, *, room: str | list[str], skip_sid: str | None = None
    ) -> None:
        # (deliveries are counted by the manager, where each is written)
        await self._sio.emit(event, data, room=room, skip_sid=skip_sid, namespace=NAMESPACE)

    def enter_room(self, sid: str, room: str) -> None:
        self._sio.manager.basic_enter_room(sid, NAMESPACE, room)

    def leave_room(self, sid: str, room: str) -> None:
        self._sio.manager.basic_leave_room(sid, NAMESPACE, room)

    def in_room(self, sid: str, room: str) -> bool:
        return sid in self._sio.manager.rooms.get(NAMESPACE, {}).get(room, {})

    def is_open(self, sid: str) -> bool:
        connected: bool = self._sio.manager.is_connected(sid, NAMESPACE)
        return connected

    def conversation_rooms(self, sid: str) -> int:
        counts: dict[str, int] = self._sio.manager.conversation_rooms
        return counts.get(sid, 0)

    async def disconnect(self, sid: str) -> None:
        await self._sio.disconnect(sid, namespace=NAMESPACE)

    def watch(self, rooms: Iterable[str]) -> Callable[[], None]:
        release: Callable[[], None] = self._sio.manager.watch(rooms)
        return release

    async def entered(self, room: str) -> None:
        await self._sio.manager.room_ready(room)
