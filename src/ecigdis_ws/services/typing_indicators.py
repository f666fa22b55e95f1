"""Typing indicators: per user and conversation, ending by themselves.

The node of the typing socket ends an indicator on its own timer (and knows
which socket to leave out). With several nodes the indicator also sits in the
shared TypingStore, and every node sweeps it for ends that are overdue, so an
indicator still ends when its node died; the store's atomic claim makes each
end announced once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from ecigdis_ws import events
from ecigdis_ws.clock import Clock, Timer
from ecigdis_ws.cluster.typing_state import TypingStore
from ecigdis_ws.domain import Actor, UserId
from ecigdis_ws.fanout.base import Fanout, conversation_room
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.services.access import AccessPolicy
from ecigdis_ws.services.tasks import BackgroundTasks

log = get_logger(__name__)
T = TypeVar("T")

# Other nodes end an indicator only this late, so the owning node normally does.
SWEEP_DELAY_MS = 1000
# How often every node sweeps the shared store for overdue indicators.
SWEEP_INTERVAL_S = 1.0


def _key(conversation_id: int, user_id: UserId) -> str:
    return f"{conversation_id}:{user_id}"


class TypingService:
    def __init__(
        self,
        *,
        fanout: Fanout,
        access: AccessPolicy,
        clock: Clock,
        tasks: BackgroundTasks,
        store: TypingStore,
        timeout_ms: int,
        parse_user_id: Callable[[str], UserId],
    ) -> None:
        self._fanout = fanout
        self._access = access
        self._clock = clock
        self._tasks = tasks
        self._store = store
        self._timeout_ms = timeout_ms
        self._parse_user_id = parse_user_id
        self._timers: dict[str, Timer] = {}
        self._sids: dict[str, str] = {}
        self._sweeper: Timer | None = None

    def _now_ms(self) -> int:
        return int(self._clock.now() * 1000)

    async def _shared(self, work: Awaitable[T], fallback: T) -> T:
        try:
            return await work
        except Exception as exc:  # Redis down: indicators stay local to this node
            log.warning("typing state not shared", reason=str(exc) or type(exc).__name__)
            return fallback

    async def start(self, actor: Actor, conversation_id: int) -> None:
        await self._access.require_member(conversation_id, actor.user_id)
        key = _key(conversation_id, actor.user_id)
        locally_new = key not in self._timers
        new = await self._shared(
            self._store.start(key, self._now_ms() + self._timeout_ms), locally_new
        )
        if not locally_new:
            self._timers[key].cancel()  # a repeated start only extends the timer

        def expire() -> None:
            self._tasks.spawn(self._expire(key, timer))

        timer = self._clock.call_later(self._timeout_ms / 1000, expire)
        self._timers[key] = timer
        self._sids[key] = actor.sid
        if new:
            await self._announce(conversation_id, actor.user_id, True, actor.sid)

    async def stop(self, actor: Actor, conversation_id: int) -> bool:
        """typing:stop; False when the user was not typing."""
        await self._access.require_member(conversation_id, actor.user_id)
        return await self.end(actor, conversation_id)

    async def end(self, actor: Actor, conversation_id: int) -> bool:
        """End the user's typing (sending a message does); False when not typing."""
        return await self._end(_key(conversation_id, actor.user_id), actor.sid)

    async def _end(self, key: str, skip_sid: str | None) -> bool:
        if key not in self._timers and not self._store.shared:
            return False  # (every send ends its sender's typing: most were not typing)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._sids.pop(key, None)
        if not await self._shared(self._store.stop(key), timer is not None):
            return False
        conversation, user = key.split(":", 1)
        await self._announce(int(conversation), self._parse_user_id(user), False, skip_sid)
        return True

    async def socket_gone(self, sid: str, conversation_id: int | None = None) -> None:
        """The socket left (one conversation) or disconnected (all): end what it started."""
        for key, owner in list(self._sids.items()):
            if owner == sid and (conversation_id is None or key.startswith(f"{conversation_id}:")):
                await self._end(key, sid)

    async def _expire(self, key: str, timer: Timer) -> None:
        # Only if this timer is still the indicator's: a start that ran between the
        # timer firing and this task extended the indicator with a timer of its own.
        if self._timers.get(key) is timer:
            await self._end(key, self._sids.get(key))

    def start_sweeping(self) -> None:
        if self._store.shared:
            self._sweeper = self._clock.call_later(
                SWEEP_INTERVAL_S, lambda: self._tasks.spawn(self._sweep())
            )

    def stop_sweeping(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def _sweep(self) -> None:
        ended = await self._shared(self._store.claim_ended(self._now_ms() - SWEEP_DELAY_MS), [])
        for key in ended:
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()
            skip = self._sids.pop(key, None)
            conversation, user = key.split(":", 1)
            await self._announce(int(conversation), self._parse_user_id(user), False, skip)
        self.start_sweeping()

    async def _announce(
        self, conversation_id: int, user_id: UserId, is_typing: bool, skip_sid: str | None
    ) -> None:
        await self._fanout.emit(
            events.TYPING_INDICATOR,
            {"userId": user_id, "conversationId": conversation_id, "isTyping": is_typing},
            room=conversation_room(conversation_id),
            skip_sid=skip_sid,
        )

    @property
    def active(self) -> int:
        """Indicators started by this node's sockets and not yet ended."""
        return len(self._timers)
