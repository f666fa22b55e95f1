"""Who may use a conversation (docs/protocol.md, Access)."""

from __future__ import annotations

from collections import OrderedDict

from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.settings import ConversationAccess
from ecigdis_ws.storage.base import ConversationRecords

# Memberships remembered at most: about ten conversations each for 10,000 users,
# a few MiB; the least recently used are forgotten first.
MEMBERSHIP_CACHE_ENTRIES = 100_000


class MembershipCache:
    """Confirmed memberships, so that every message does not ask the database.

    Only "is a member" is remembered. A change made through this server calls
    `forget`; a change made elsewhere (another node, the CLI, the database by
    hand) is seen within `ttl_s`, the MEMBERSHIP_CACHE_S setting.
    """

    def __init__(self, clock: Clock, ttl_s: float) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._confirmed: OrderedDict[tuple[int, UserId], float] = OrderedDict()

    def knows(self, conversation_id: int, user_id: UserId) -> bool:
        key = (conversation_id, user_id)
        confirmed_at = self._confirmed.get(key)
        if confirmed_at is None:
            return False
        if self._clock.now() - confirmed_at >= self._ttl_s:
            del self._confirmed[key]
            return False
        self._confirmed.move_to_end(key)
        return True

    def confirm(self, conversation_id: int, user_id: UserId) -> None:
        if self._ttl_s <= 0:
            return
        self._confirmed[(conversation_id, user_id)] = self._clock.now()
        self._confirmed.move_to_end((conversation_id, user_id))
        while len(self._confirmed) > MEMBERSHIP_CACHE_ENTRIES:
            self._confirmed.popitem(last=False)

    def forget(self, conversation_id: int, user_id: UserId) -> None:
        self._confirmed.pop((conversation_id, user_id), None)


class AccessPolicy:
    def __init__(
        self,
        *,
        conversations: ConversationRecords,
        mode: ConversationAccess,
        clock: Clock,
        cache_s: float = 0,
    ) -> None:
        self._conversations = conversations
        self._mode = mode
        self._clock = clock
        self.memberships = MembershipCache(clock, cache_s)

    async def require_member(self, conversation_id: int, user_id: UserId) -> None:
        """members: FORBIDDEN unless listed; open: list the user (any event joins)."""
        if self.memberships.knows(conversation_id, user_id):
            return
        if self._mode == "open":
            now_ms = int(self._clock.now() * 1000)
            await self._conversations.ensure_conversation(conversation_id, now_ms)
            await self._conversations.add_member(conversation_id, user_id, now_ms)
        elif not await self._conversations.is_member(conversation_id, user_id):
            raise ChatError(ErrorCode.FORBIDDEN, "not a member of this conversation")
        self.memberships.confirm(conversation_id, user_id)
