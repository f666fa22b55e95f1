"""`conversation:added` and `conversation:removed`: a user's own sockets, on every
node, told that they became or stopped being a member of a conversation.

They go to the per-user room (`fanout.base.user_room`), which every authenticated
socket enters whatever PRESENCE_SCOPE is (PresenceService.socket_online), so the
fan-out reaches the user's sockets on every node, and each node's delivery
notifier sees the change (ServerApiService.delivered wakes the user's long-polls).
"""

from __future__ import annotations

from collections.abc import Iterable

from ecigdis_ws.domain import MembershipChange, UserId
from ecigdis_ws.fanout.base import Fanout, user_room

USER_ROOM_PREFIX = user_room("")


async def tell_users(fanout: Fanout, change: MembershipChange, user_ids: Iterable[UserId]) -> None:
    """One emit for every user concerned (the payload names none of them), each
    socket once."""
    rooms = [user_room(user_id) for user_id in dict.fromkeys(user_ids)]
    if rooms:
        await fanout.emit(change.event, change.data(), room=rooms[0] if len(rooms) == 1 else rooms)


def users_addressed(room: str | list[str] | None) -> frozenset[str]:
    """The users (as text) whose rooms a delivery went to; none for other rooms."""
    rooms = [room] if isinstance(room, str) else room or []
    return frozenset(
        one[len(USER_ROOM_PREFIX):] for one in rooms if one.startswith(USER_ROOM_PREFIX)
    )
