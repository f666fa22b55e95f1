"""Typing indicators: per user and conversation, ending by themselves."""

from __future__ import annotations

from dataclasses import dataclass

from ecigdis_ws.clock import Clock, Timer
from ecigdis_ws.domain import Actor, UserId
from ecigdis_ws.fanout.base import Fanout, conversation_room
from ecigdis_ws.services.access import AccessPolicy
from ecigdis_ws.services.tasks import BackgroundTasks

TypingKey = tuple[int, UserId]


@dataclass
class _Typing:
    sid: str
    timer: Timer


class TypingService:
    def __init__(
        self,
        fanout: Fanout,
        access: AccessPolicy,
        clock: Clock,
        tasks: BackgroundTasks,
        timeout_ms: int,
    ) -> None:
        self._fanout = fanout
        self._access = access
        self._clock = clock
        self._tasks = tasks
        self._timeout_s = timeout_ms / 1000
        self._typing: dict[TypingKey, _Typing] = {}

    def _arm(self, key: TypingKey) -> Timer:
        return self._clock.call_later(self._timeout_s, lambda: self._expire(key))

    async def start(self, actor: Actor, conversation_id: int) -> None:
        await self._access.require_member(conversation_id, actor.user_id)
        key = (conversation_id, actor.user_id)
        current = self._typing.get(key)
        if current is not None:
            # A repeated start only extends the timer, without a new broadcast.
            current.timer.cancel()
            current.timer = self._arm(key)
            current.sid = actor.sid
            return
        self._typing[key] = _Typing(actor.sid, self._arm(key))
        await self._announce(conversation_id, actor.user_id, True, actor.sid)

    async def stop(self, actor: Actor, conversation_id: int) -> bool:
        """typing:stop; False when the user was not typing."""
        await self._access.require_member(conversation_id, actor.user_id)
        return await self.end(actor, conversation_id)

    async def end(self, actor: Actor, conversation_id: int) -> bool:
        """End the user's typing (sending a message does); False when not typing."""
        current = self._typing.pop((conversation_id, actor.user_id), None)
        if current is None:
            return False
        current.timer.cancel()
        await self._announce(conversation_id, actor.user_id, False, actor.sid)
        return True

    async def socket_gone(self, sid: str, conversation_id: int | None = None) -> None:
        """The socket left (one conversation) or disconnected (all): end what it started."""
        for key, current in list(self._typing.items()):
            if current.sid == sid and conversation_id in (None, key[0]):
                del self._typing[key]
                current.timer.cancel()
                await self._announce(key[0], key[1], False, sid)

    def _expire(self, key: TypingKey) -> None:
        current = self._typing.pop(key, None)
        if current is not None:
            self._tasks.spawn(self._announce(key[0], key[1], False, current.sid))

    async def _announce(
        self, conversation_id: int, user_id: UserId, is_typing: bool, skip_sid: str
    ) -> None:
        await self._fanout.emit(
            "typing:indicator",
            {"userId": user_id, "conversationId": conversation_id, "isTyping": is_typing},
            room=conversation_room(conversation_id),
            skip_sid=skip_sid,
        )

    @property
    def active(self) -> int:
        return len(self._typing)
