"""Read positions that only move forward, announced when they do."""

from __future__ import annotations

from ecigdis_ws import events
from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import Actor, read_receipt_wire
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.fanout.base import Fanout, conversation_room
from ecigdis_ws.services.access import AccessPolicy
from ecigdis_ws.storage.base import MessageRecords, ReceiptRecords


class ReceiptService:
    def __init__(
        self,
        *,
        messages: MessageRecords,
        receipts: ReceiptRecords,
        fanout: Fanout,
        access: AccessPolicy,
        clock: Clock,
    ) -> None:
        self._messages = messages
        self._receipts = receipts
        self._fanout = fanout
        self._access = access
        self._clock = clock

    async def mark_read(self, actor: Actor, conversation_id: int, message_id: int) -> bool:
        await self._access.require_member(conversation_id, actor.user_id)
        if not await self._messages.message_in_conversation(conversation_id, message_id):
            raise ChatError(ErrorCode.NOT_FOUND, "no such message in this conversation")
        now_ms = int(self._clock.now() * 1000)  # readAt, on the socket and in the event log
        advanced = await self._receipts.advance_read(
            conversation_id, actor.user_id, message_id, now_ms
        )
        if advanced:
            await self._fanout.emit(
                events.READ_RECEIPT,
                read_receipt_wire(conversation_id, message_id, actor.user_id, now_ms),
                room=conversation_room(conversation_id),
                skip_sid=actor.sid,
            )
        return advanced
