"""Who may run a conversation: its owners and admins (docs/protocol.md, Roles).

The creator of a conversation is its owner. Owners and admins moderate: delete
what others posted, read the versions an edit replaced, pin, rename, add and
remove members. In a conversation of two, either member may pin and rename: a
conversation between two people is run by both.
"""

from __future__ import annotations

from ecigdis_ws.domain import Role, UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.storage.base import ConversationRecords

RUNNING_ROLES: frozenset[Role] = frozenset({"owner", "admin"})


class Roles:
    def __init__(self, conversations: ConversationRecords) -> None:
        self._conversations = conversations

    async def role(self, conversation_id: int, user_id: UserId) -> Role | None:
        return await self._conversations.role_of(conversation_id, user_id)

    async def is_admin(self, conversation_id: int, user_id: UserId) -> bool:
        """An owner or an admin of the conversation."""
        return await self.role(conversation_id, user_id) in RUNNING_ROLES

    async def require_admin(self, conversation_id: int, user_id: UserId, doing: str) -> None:
        """FORBIDDEN unless the user is an owner or admin (`doing`: for the message)."""
        if not await self.is_admin(conversation_id, user_id):
            raise ChatError(ErrorCode.FORBIDDEN, f"only the conversation's admins may {doing}")

    async def require_admin_or_pair(
        self, conversation_id: int, user_id: UserId, doing: str
    ) -> None:
        """require_admin, but either member of a conversation of two may."""
        if await self.is_admin(conversation_id, user_id):
            return
        members = await self._conversations.member_ids(conversation_id)
        if len(members) == 2 and str(user_id) in {str(member) for member in members}:
            return
        raise ChatError(ErrorCode.FORBIDDEN, f"only the conversation's admins may {doing}")
