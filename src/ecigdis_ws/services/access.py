"""Who may use a conversation (PROTOCOL.md, Access)."""

from __future__ import annotations

from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.settings import ConversationAccess
from ecigdis_ws.storage.base import Storage


class AccessPolicy:
    def __init__(self, storage: Storage, mode: ConversationAccess, clock: Clock) -> None:
        self._storage = storage
        self._mode = mode
        self._clock = clock

    async def require_member(self, conversation_id: int, user_id: UserId) -> None:
        """members: FORBIDDEN unless listed; open: list the user (any event joins)."""
        if self._mode == "open":
            now_ms = int(self._clock.now() * 1000)
            await self._storage.ensure_conversation(conversation_id, now_ms)
            await self._storage.add_member(conversation_id, user_id, now_ms)
            return
        if not await self._storage.is_member(conversation_id, user_id):
            raise ChatError(ErrorCode.FORBIDDEN, "not a member of this conversation")
