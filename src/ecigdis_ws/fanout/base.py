"""What services need to deliver events, independent of how many nodes there are."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

AUTHENTICATED_ROOM = "authenticated"
CONVERSATION_ROOM_PREFIX = "conversation:"


def conversation_room(conversation_id: int) -> str:
    return f"{CONVERSATION_ROOM_PREFIX}{conversation_id}"


def user_room(user_id: object) -> str:
    """Every authenticated socket of one user (PRESENCE_SCOPE=contacts addresses these)."""
    return f"user:{user_id}"


class Fanout(Protocol):
    async def emit(
        self, event: str, data: Any, *, room: str | list[str], skip_sid: str | None = None
    ) -> None:
        """Deliver to every socket in `room` (a room, a socket id, or a list of rooms,
        each socket once) but `skip_sid`."""

    def enter_room(self, sid: str, room: str) -> None: ...

    def leave_room(self, sid: str, room: str) -> None: ...

    def in_room(self, sid: str, room: str) -> bool: ...

    def is_open(self, sid: str) -> bool:
        """Whether the socket is still connected to this node (not gone, nor going):
        long work for one socket stops once it is not."""

    def conversation_rooms(self, sid: str) -> int:
        """How many conversation rooms the socket is in (on this node)."""

    async def disconnect(self, sid: str) -> None: ...

    async def entered(self, room: str) -> None:
        """Return once this node hears what other nodes emit to `room` (a socket
        here just entered it): with per-room channels, once Redis confirmed the
        subscription, so nothing sent after a join's reply can miss the socket."""

    def watch(self, rooms: Iterable[str]) -> Callable[[], None]:
        """Have this node receive what is emitted to these rooms, though no socket
        here is in them (a long-poll waits for them), until the returned call."""
