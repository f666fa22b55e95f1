"""Joining and leaving conversation rooms, with gap-free replay on join."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecigdis_ws.domain import (
    Actor,
    OnlineUser,
    ReadPosition,
    UserId,
    reads_wire,
    with_reactions,
)
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.fanout.base import Fanout, conversation_room
from ecigdis_ws.services.access import AccessPolicy
from ecigdis_ws.services.presence import PresenceService
from ecigdis_ws.services.typing_indicators import TypingService
from ecigdis_ws.storage.base import Storage

# Replay reads this many messages per query, so a long absence costs no huge read.
REPLAY_PAGE_SIZE = 500


@dataclass(frozen=True)
class ConversationLimits:
    max_rooms_per_socket: int  # 0: no cap
    presence_list_max: int


@dataclass(frozen=True)
class PresenceList:
    """presence:request's answer: at most PRESENCE_LIST_MAX users, and whether
    more were online than it lists."""

    users: list[OnlineUser]
    truncated: bool

    def wire(self) -> dict[str, object]:
        return {
            "users": [user.wire() for user in self.users],
            "count": len(self.users),
            "truncated": self.truncated,
        }


@dataclass(frozen=True)
class JoinResult:
    """conversation:join's answer: who is online, and where each member has read to."""

    online_user_ids: list[UserId]
    reads: list[ReadPosition]

    def wire(self, conversation_id: int) -> dict[str, Any]:
        return {
            "conversationId": conversation_id,
            "onlineUserIds": self.online_user_ids,
            "reads": reads_wire(self.reads),
        }


class ConversationService:
    def __init__(
        self,
        storage: Storage,
        fanout: Fanout,
        access: AccessPolicy,
        presence: PresenceService,
        typing: TypingService,
        limits: ConversationLimits,
    ) -> None:
        self._limits = limits
        self._storage = storage
        self._fanout = fanout
        self._access = access
        self._presence = presence
        self._typing = typing

    async def join(self, actor: Actor, conversation_id: int, since: int | None) -> JoinResult:
        """Enter the room, replay what came after `since`; return the members online
        and the members' read positions."""
        room = conversation_room(conversation_id)
        self._check_room_cap(actor.sid, room)  # (before open access makes a member)
        await self._access.require_member(conversation_id, actor.user_id)
        if since is not None:
            since = await self._replay(actor.sid, conversation_id, since)
        newly_in_room = not self._fanout.in_room(actor.sid, room)
        self._fanout.enter_room(actor.sid, room)
        await self._fanout.entered(room)  # other nodes' emits reach this node from here
        if since is not None:
            # Anything stored between the replay and entering the room is sent now;
            # what is fanned out live from here on may repeat it, and the client
            # drops repeats by id. So there is no gap.
            await self._replay(actor.sid, conversation_id, since)
        if newly_in_room:
            await self._fanout.emit(
                "user:joined",
                {"userId": actor.user_id, "conversationId": conversation_id},
                room=room,
                skip_sid=actor.sid,
            )
        # The members and their read positions in one query (the join read the
        # members before; now the same read also says who has seen what).
        positions = await self._storage.read_positions(conversation_id)
        members = [position.user_id for position in positions]
        online = [user.user_id for user in await self._presence.online(members)]
        if actor.user_id not in online:
            online.append(actor.user_id)
        return JoinResult(online, positions)

    def _check_room_cap(self, sid: str, room: str) -> None:
        """Each room a socket is in costs memory, and a disconnect walks every room
        of the node: past MAX_ROOMS_PER_SOCKET a new room is refused."""
        cap = self._limits.max_rooms_per_socket
        if cap and not self._fanout.in_room(sid, room) and (
            self._fanout.conversation_rooms(sid) >= cap
        ):
            raise ChatError(
                ErrorCode.RATE_LIMITED,
                f"this socket is in {cap} conversations already: leave one first",
            )

    async def _replay(self, sid: str, conversation_id: int, after_id: int) -> int:
        """Send every message after `after_id` to one socket; return the last id sent."""
        while True:
            page = await self._storage.messages_after(conversation_id, after_id, REPLAY_PAGE_SIZE)
            reactions = await self._storage.reactions_of([message.id for message in page])
            for message in page:
                await self._fanout.emit(
                    "message:new", with_reactions(message, reactions.get(message.id, ())), room=sid
                )
            if page:
                after_id = page[-1].id
            if len(page) < REPLAY_PAGE_SIZE:
                return after_id

    async def leave(self, actor: Actor, conversation_id: int) -> None:
        room = conversation_room(conversation_id)
        if not self._fanout.in_room(actor.sid, room):
            return
        self._fanout.leave_room(actor.sid, room)
        await self._typing.socket_gone(actor.sid, conversation_id)
        await self._fanout.emit(
            "user:left", {"userId": actor.user_id, "conversationId": conversation_id}, room=room
        )

    async def online_members(self, actor: Actor, conversation_id: int | None) -> list[OnlineUser]:
        """presence:request: everyone online, or one conversation's members online."""
        if conversation_id is None:
            return await self._presence.online()
        await self._access.require_member(conversation_id, actor.user_id)
        members = await self._storage.member_ids(conversation_id)
        return await self._presence.online(members)

    async def presence_list(self, actor: Actor, conversation_id: int | None) -> PresenceList:
        """online_members cut at PRESENCE_LIST_MAX: a 25-byte request must not buy
        the whole online list of a busy cluster."""
        users = await self.online_members(actor, conversation_id)
        cap = self._limits.presence_list_max
        return PresenceList(users[:cap], len(users) > cap)
