"""Joining and leaving conversation rooms, with gap-free replay on join."""

from __future__ import annotations

from ecigdis_ws.domain import Actor, OnlineUser, UserId
from ecigdis_ws.fanout.base import Fanout, conversation_room
from ecigdis_ws.services.access import AccessPolicy
from ecigdis_ws.services.presence import PresenceService
from ecigdis_ws.services.typing import TypingService
from ecigdis_ws.storage.base import Storage

# Replay reads this many messages per query, so a long absence costs no huge read.
REPLAY_PAGE_SIZE = 500


class ConversationService:
    def __init__(
        self,
        storage: Storage,
        fanout: Fanout,
        access: AccessPolicy,
        presence: PresenceService,
        typing: TypingService,
    ) -> None:
        self._storage = storage
        self._fanout = fanout
        self._access = access
        self._presence = presence
        self._typing = typing

    async def join(self, actor: Actor, conversation_id: int, since: int | None) -> list[UserId]:
        """Enter the room, replay what came after `since`; return the members online."""
        await self._access.require_member(conversation_id, actor.user_id)
        room = conversation_room(conversation_id)
        if since is not None:
            since = await self._replay(actor.sid, conversation_id, since)
        newly_in_room = not self._fanout.in_room(actor.sid, room)
        self._fanout.enter_room(actor.sid, room)
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
        members = await self._storage.member_ids(conversation_id)
        online = [user.user_id for user in await self._presence.online(members)]
        if actor.user_id not in online:
            online.append(actor.user_id)
        return online

    async def _replay(self, sid: str, conversation_id: int, after_id: int) -> int:
        """Send every message after `after_id` to one socket; return the last id sent."""
        while True:
            page = await self._storage.messages_after(conversation_id, after_id, REPLAY_PAGE_SIZE)
            for message in page:
                await self._fanout.emit("message:new", message.wire(), room=sid)
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
