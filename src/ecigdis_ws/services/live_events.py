"""Typing and presence for the REST long-poll: ephemeral, so never in the event log.

Every node is told of every typing:indicator, user:online and user:offline it
delivers (the DeliveryNotifier; other nodes' arrive through Redis), and keeps them
a short while in a bounded buffer, numbered in arrival order. A poll carries a
`live` position (`<buffer>:<number>`) beside its cursor and gets the buffered
events after it that its user may see, scoped by the room the event was sent to,
as on the socket: typing to the members of the conversation, presence to everyone
authenticated (PRESENCE_SCOPE=global) or to the user rooms it named (contacts).
A user never gets their own typing or presence back. A position from another node
or an older process (the buffer's id differs) starts from now: a poll that moved
to another node misses what happened in between, as a reconnecting socket does.
"""

from __future__ import annotations

import re
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ecigdis_ws import events
from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.fanout.base import AUTHENTICATED_ROOM, CONVERSATION_ROOM_PREFIX, user_room
from ecigdis_ws.observability.log_setup import get_logger

log = get_logger(__name__)

LIVE_EVENTS = frozenset({events.TYPING_INDICATOR, events.USER_ONLINE, events.USER_OFFLINE})
# Events kept: a busy node's few seconds of typing and presence, at most this much memory.
BUFFER_MAX = 2000
# Kept this long: a client polls again as soon as an answer arrives, so an event
# is normally collected within one round trip; older ones are stale anyway (a
# typing indicator ends after TYPING_TIMEOUT_MS, 5 s by default).
MAX_AGE_S = 10.0
_POSITION = re.compile(r"^([0-9a-f]{8}):([0-9]{1,19})$")


@dataclass(frozen=True)
class LiveEvent:
    number: int
    at: float
    event: str
    data: dict[str, Any]
    conversation_id: int | None  # typing: for the members of this conversation
    users: frozenset[str] | None  # presence: these user rooms; None: everyone

    def for_user(self, user_id: UserId, conversations: set[int]) -> bool:
        if self.data.get("userId") == user_id:
            return False  # the socket skips the sender's own socket; a poll skips its user
        if self.conversation_id is not None:
            return self.conversation_id in conversations
        return self.users is None or user_room(user_id) in self.users

    def wire(self) -> dict[str, Any]:
        return {"event": self.event, "data": self.data}


def _audience(room: str | list[str] | None) -> tuple[int | None, frozenset[str] | None] | None:
    """(conversation, user rooms) the room stands for; None: not a room a poll hears."""
    if isinstance(room, list):
        return None, frozenset(room)
    if room == AUTHENTICATED_ROOM:
        return None, None
    if isinstance(room, str) and room.startswith(CONVERSATION_ROOM_PREFIX):
        suffix = room[len(CONVERSATION_ROOM_PREFIX):]
        if suffix.isascii() and suffix.isdigit():
            return int(suffix), None
    return None


class LiveEvents:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.buffer_id = secrets.token_hex(4)  # tells this process's numbers from others'
        self._events: deque[LiveEvent] = deque(maxlen=BUFFER_MAX)
        self._last = 0
        self._listeners: list[Callable[[LiveEvent], None]] = []

    def on_event(self, listener: Callable[[LiveEvent], None]) -> None:
        """`listener` hears each event as it is buffered (the feed wakes its polls)."""
        self._listeners.append(listener)

    def delivered(self, event: str, data: Any, room: str | list[str] | None) -> None:
        """A DeliveryNotifier listener: runs inside the delivery, so never raises."""
        if event not in LIVE_EVENTS or not isinstance(data, dict):
            return
        audience = _audience(room)
        if audience is None:
            return
        self._last += 1
        live = LiveEvent(self._last, self._clock.now(), event, data, *audience)
        self._events.append(live)
        for listener in self._listeners:
            try:
                listener(live)
            except Exception:  # a bug here must not fail the emit that is delivering
                log.exception("live event listener failed", delivered=event)

    # -- positions ------------------------------------------------------------------

    def position(self, number: int | None = None) -> str:
        return f"{self.buffer_id}:{self._last if number is None else number}"

    def parse(self, raw: str) -> int:
        """The number after which a poll wants events: from now when it has no
        position (empty), or one of another node or process."""
        if raw == "":
            return self._last
        match = _POSITION.match(raw)
        if match is None:
            raise ChatError(ErrorCode.INVALID_PAYLOAD,
                            "live must be the `live` of a previous poll answer")
        number = int(match.group(2))
        if match.group(1) != self.buffer_id or number > self._last:
            return self._last
        return number

    def after(self, number: int, user_id: UserId, conversations: set[int]) -> list[LiveEvent]:
        """The user's events after `number` and within MAX_AGE_S, oldest first."""
        oldest = self._clock.now() - MAX_AGE_S
        newer: list[LiveEvent] = []
        for live in reversed(self._events):  # (numbers and times only grow)
            if live.number <= number or live.at < oldest:
                break
            newer.append(live)
        newer.reverse()
        return [live for live in newer if live.for_user(user_id, conversations)]

    @property
    def last(self) -> int:
        return self._last
