"""Who is online: user:online on a user's first socket, user:offline after the
grace period once their last socket closed."""

from __future__ import annotations

from collections.abc import Iterable

from ecigdis_ws.clock import Clock, Timer
from ecigdis_ws.domain import Actor, OnlineUser, UserId, iso_ms
from ecigdis_ws.errors import StorageUnavailable
from ecigdis_ws.fanout.base import AUTHENTICATED_ROOM, Fanout
from ecigdis_ws.observability.logging import get_logger
from ecigdis_ws.services.tasks import BackgroundTasks
from ecigdis_ws.storage.base import Storage

log = get_logger(__name__)


class PresenceService:
    def __init__(
        self,
        fanout: Fanout,
        storage: Storage,
        clock: Clock,
        tasks: BackgroundTasks,
        grace_ms: int,
    ) -> None:
        self._fanout = fanout
        self._storage = storage
        self._clock = clock
        self._tasks = tasks
        self._grace_s = grace_ms / 1000
        self._sockets: dict[UserId, set[str]] = {}
        self._names: dict[UserId, str] = {}
        self._going_offline: dict[UserId, Timer] = {}

    async def socket_online(self, actor: Actor) -> None:
        self._fanout.enter_room(actor.sid, AUTHENTICATED_ROOM)
        sockets = self._sockets.setdefault(actor.user_id, set())
        first = not sockets and actor.user_id not in self._going_offline
        sockets.add(actor.sid)
        self._names[actor.user_id] = actor.name
        pending = self._going_offline.pop(actor.user_id, None)
        if pending is not None:
            pending.cancel()  # back within the grace period: they never went offline
        if first:
            await self._fanout.emit(
                "user:online",
                {"userId": actor.user_id, "name": actor.name},
                room=AUTHENTICATED_ROOM,
                skip_sid=actor.sid,
            )

    def socket_offline(self, actor: Actor) -> None:
        sockets = self._sockets.get(actor.user_id)
        if sockets is None:
            return
        sockets.discard(actor.sid)
        if not sockets:
            # lastSeen is when the last connection closed, not when the grace ran out.
            last_seen_ms = int(self._clock.now() * 1000)
            self._going_offline[actor.user_id] = self._clock.call_later(
                self._grace_s, lambda: self._grace_over(actor.user_id, last_seen_ms)
            )

    def _grace_over(self, user_id: UserId, last_seen_ms: int) -> None:
        self._going_offline.pop(user_id, None)
        if self._sockets.get(user_id):
            return
        self._sockets.pop(user_id, None)
        self._names.pop(user_id, None)
        self._tasks.spawn(self._announce_offline(user_id, last_seen_ms))

    async def _announce_offline(self, user_id: UserId, now_ms: int) -> None:
        try:
            await self._storage.set_last_seen(user_id, now_ms)
        except StorageUnavailable:
            log.warning("last seen not stored: database unavailable", user_id=user_id)
        await self._fanout.emit(
            "user:offline", {"userId": user_id, "lastSeen": iso_ms(now_ms)},
            room=AUTHENTICATED_ROOM,
        )

    def online(self, among: Iterable[UserId] | None = None) -> list[OnlineUser]:
        """Online users (those within the grace period count), optionally only `among`."""
        candidates = self._names.keys() if among is None else among
        return [
            OnlineUser(user_id, self._names[user_id])
            for user_id in candidates
            if user_id in self._names
        ]

    def is_online(self, user_id: UserId) -> bool:
        return user_id in self._names

    @property
    def user_count(self) -> int:
        return len(self._names)
