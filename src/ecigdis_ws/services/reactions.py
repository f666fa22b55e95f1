"""Reactions: each user's emoji on a message toggles on and off."""

from __future__ import annotations

from ecigdis_ws import events
from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import Actor, ReactionAction, reaction_wire
from ecigdis_ws.fanout.base import Fanout, conversation_room
from ecigdis_ws.services.access import AccessPolicy
from ecigdis_ws.services.message_changes import live_message
from ecigdis_ws.storage.base import MessageChangeRecords, ReactionRecords


class ReactionService:
    def __init__(
        self,
        *,
        changes: MessageChangeRecords,
        reactions: ReactionRecords,
        fanout: Fanout,
        access: AccessPolicy,
        clock: Clock,
    ) -> None:
        self._changes = changes
        self._reactions = reactions
        self._fanout = fanout
        self._access = access
        self._clock = clock

    async def toggle(
        self, actor: Actor, conversation_id: int, message_id: int, emoji: str
    ) -> ReactionAction:
        await self._access.require_member(conversation_id, actor.user_id)
        await live_message(self._changes, conversation_id, message_id)  # (a deleted
        # one's reactions went with it)
        action = await self._reactions.toggle_reaction(
            message_id, actor.user_id, emoji, int(self._clock.now() * 1000)
        )
        await self._fanout.emit(
            events.REACTION,
            reaction_wire(conversation_id, message_id, actor.user_id, emoji, action),
            room=conversation_room(conversation_id),
            skip_sid=actor.sid,
        )
        return action
