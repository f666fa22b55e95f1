"""Who a user may put into a conversation they create, how many, and how often.

A create holds the database writer while its members are written, and puts the
conversation into every member's list: without these rules any user could stall
everyone's sends with large creates, and fill anyone's conversation list.
"""

from __future__ import annotations

from collections.abc import Sequence

from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.rate_limit import RateLimiter
from ecigdis_ws.settings import MemberAddPolicy
from ecigdis_ws.storage.base import ConversationRecords

# RATE_LIMIT_CONVERSATIONS counts creates per this many seconds.
CREATE_RATE_PERIOD_S = 60.0


def too_many_members(max_members: int) -> ChatError:
    return ChatError(
        ErrorCode.INVALID_PAYLOAD,
        f"a conversation has at most {max_members} members, its creator included",
    )


class MemberRules:
    def __init__(
        self,
        *,
        conversations: ConversationRecords,
        clock: Clock,
        max_members: int,
        policy: MemberAddPolicy,
        creates_per_minute: int,
    ) -> None:
        self._conversations = conversations
        self._max_members = max_members
        self._policy = policy
        self._creates = RateLimiter(creates_per_minute, clock, CREATE_RATE_PERIOD_S)

    async def check_create(self, creator: UserId, everyone: Sequence[UserId]) -> None:
        """Raise unless `creator` may create a conversation of `everyone` (distinct
        ids, the creator among them) now; spends one of the creator's creates."""
        if len(everyone) > self._max_members:
            raise too_many_members(self._max_members)
        others = [user_id for user_id in everyone if user_id != creator]
        if others:
            await self._require_may_add(creator, others)
        if not self._creates.allow(creator):
            raise ChatError(ErrorCode.RATE_LIMITED, "too many conversations created")

    async def check_add(self, adder: UserId, user_id: UserId) -> None:
        """Raise unless MEMBER_ADD_POLICY lets `adder` put `user_id` into a
        conversation (the member cap is the add's own, counted as it writes)."""
        if str(user_id) != str(adder):
            await self._require_may_add(adder, [user_id])

    async def _require_may_add(self, creator: UserId, others: Sequence[UserId]) -> None:
        if self._policy == "server_api":
            raise ChatError(
                ErrorCode.FORBIDDEN,
                "only the main site adds other users to conversations (MEMBER_ADD_POLICY)",
            )
        if self._policy == "contacts":
            contacts = {str(user_id) for user_id in await self._conversations.contact_ids(creator)}
            strangers = [user_id for user_id in others if str(user_id) not in contacts]
            if strangers:
                raise ChatError(
                    ErrorCode.FORBIDDEN,
                    f"{len(strangers)} of the members share no conversation with you yet "
                    "(MEMBER_ADD_POLICY=contacts)",
                )
