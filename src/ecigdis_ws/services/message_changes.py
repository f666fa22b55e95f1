"""A message after it is sent: edit, delete, pin, and what an edit kept.

docs/protocol.md, "Messages after they are sent", has the rules and why:
- an edit is its sender's, within MESSAGE_EDIT_WINDOW_S; the room hears
  `message:updated` and nobody is notified again (an edit's mentions are the
  send's); the replaced text is kept, readable by admins and the server API;
- a deletion is its sender's, an admin's or the server API's, at any time; the
  room hears `message:deleted`; the text, its versions, its reactions and its pin
  are erased, and a tombstone keeps the id's place;
- pins are the admins' (either member's in a conversation of two), at most
  MAX_PINS_PER_CONVERSATION.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecigdis_ws import events
from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import (
    Actor,
    MessageVersion,
    StoredMessage,
    UserId,
    message_deleted_wire,
    message_updated_wire,
    pin_wire,
)
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.fanout.base import Fanout, conversation_room
from ecigdis_ws.services.access import AccessPolicy
from ecigdis_ws.services.roles import Roles
from ecigdis_ws.storage.base import MessageChangeRecords
from ecigdis_ws.storage.message_changes import MessageDeleted, PinsFull


async def live_message(
    changes: MessageChangeRecords, conversation_id: int, message_id: int, field: str = ""
) -> StoredMessage:
    """The message acted on: NOT_FOUND unless the conversation has it, CONFLICT once
    it is deleted (`field` names the payload's field in the message, `replyTo: `)."""
    message = await changes.message(conversation_id, message_id)
    if message is None:
        raise ChatError(ErrorCode.NOT_FOUND, f"{field}no such message in this conversation")
    if message.deleted:
        raise ChatError(ErrorCode.CONFLICT, f"{field}the message was deleted")
    return message


@dataclass(frozen=True)
class ChangeLimits:
    edit_window_s: int  # 0: no window
    max_pins: int


@dataclass(frozen=True)
class Edited:
    message: StoredMessage
    changed: bool  # False: the same text again, nothing written or told

    def wire(self) -> dict[str, object]:
        return {**message_updated_wire(self.message), "changed": self.changed}


class MessageChangeService:
    def __init__(
        self,
        *,
        changes: MessageChangeRecords,
        fanout: Fanout,
        access: AccessPolicy,
        roles: Roles,
        clock: Clock,
        limits: ChangeLimits,
    ) -> None:
        self._changes = changes
        self._fanout = fanout
        self._access = access
        self._roles = roles
        self._clock = clock
        self._limits = limits

    def _now_ms(self) -> int:
        return int(self._clock.now() * 1000)

    async def live_message(self, conversation_id: int, message_id: int) -> StoredMessage:
        return await live_message(self._changes, conversation_id, message_id)

    async def edit(
        self, actor: Actor, conversation_id: int, message_id: int, text: str
    ) -> Edited:
        await self._access.require_member(conversation_id, actor.user_id)
        message = await self.live_message(conversation_id, message_id)
        if str(message.user_id) != str(actor.user_id):
            raise ChatError(ErrorCode.FORBIDDEN, "only its sender may edit a message")
        now_ms = self._now_ms()
        window_s = self._limits.edit_window_s
        if window_s and now_ms - message.created_at_ms > window_s * 1000:
            raise ChatError(ErrorCode.CONFLICT,
                            f"messages may be edited for {window_s} s after they are sent")
        if text == message.text:
            return Edited(message, changed=False)
        edited = await self._changes.edit_message(message, text, now_ms)
        if edited is None:  # deleted or edited by another request since the read
            raise ChatError(ErrorCode.CONFLICT, "the message changed meanwhile: read it again")
        await self._fanout.emit(events.MESSAGE_UPDATED, message_updated_wire(edited),
                                room=conversation_room(conversation_id), skip_sid=actor.sid)
        return Edited(edited, changed=True)

    async def delete(
        self, actor: Actor | None, conversation_id: int, message_id: int
    ) -> dict[str, object]:
        """By its sender, an owner or admin, or (actor None) the server API."""
        if actor is not None:
            await self._access.require_member(conversation_id, actor.user_id)
        message = await self.live_message(conversation_id, message_id)
        if actor is not None and str(message.user_id) != str(actor.user_id):
            await self._roles.require_admin(conversation_id, actor.user_id,
                                            "delete what others posted")
        by: UserId | None = None if actor is None else actor.user_id
        now_ms = self._now_ms()
        if not await self._changes.delete_message(message, by, now_ms):
            raise ChatError(ErrorCode.CONFLICT, "the message was deleted")
        wire = message_deleted_wire(conversation_id, message_id, by, now_ms)
        await self._fanout.emit(events.MESSAGE_DELETED, wire,
                                room=conversation_room(conversation_id),
                                skip_sid=None if actor is None else actor.sid)
        # (after the room heard it: the deletion reaches members as fast as a send,
        # and the answer still comes once nothing of the text is left on disk)
        await self._changes.scrub()
        return wire

    async def versions(
        self, actor: Actor | None, conversation_id: int, message_id: int
    ) -> tuple[StoredMessage, list[MessageVersion]]:
        """The message now and the texts its edits replaced: owners and admins (for
        disputes) and (actor None) the server API."""
        if actor is not None:
            await self._access.require_member(conversation_id, actor.user_id)
            await self._roles.require_admin(conversation_id, actor.user_id,
                                            "read a message's earlier versions")
        message = await self._changes.message(conversation_id, message_id)
        if message is None:
            raise ChatError(ErrorCode.NOT_FOUND, "no such message in this conversation")
        return message, await self._changes.message_versions(message_id)

    async def pin(
        self, actor: Actor, conversation_id: int, message_id: int, pinned: bool
    ) -> bool:
        """message:pin / message:unpin; True when it changed (the room hears it)."""
        await self._access.require_member(conversation_id, actor.user_id)
        await self._roles.require_admin_or_pair(conversation_id, actor.user_id,
                                                "pin messages" if pinned else "unpin messages")
        message = await self.live_message(conversation_id, message_id)
        now_ms = self._now_ms()
        if pinned:
            try:
                changed = await self._changes.pin(message, actor.user_id, now_ms,
                                                  self._limits.max_pins)
            except PinsFull as full:
                raise ChatError(ErrorCode.CONFLICT, str(full)) from None
            except MessageDeleted:
                raise ChatError(ErrorCode.CONFLICT, "the message was deleted") from None
        else:
            changed = await self._changes.unpin(message, actor.user_id, now_ms)
        if changed:
            await self._fanout.emit(
                events.MESSAGE_PINNED if pinned else events.MESSAGE_UNPINNED,
                pin_wire(conversation_id, message_id, actor.user_id, now_ms, pinned),
                room=conversation_room(conversation_id), skip_sid=actor.sid,
            )
        return changed
