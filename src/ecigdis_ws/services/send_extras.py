"""What a send may carry beside its text: the message it replies to and the users
it mentions, each checked against the conversation before anything is stored."""

from __future__ import annotations

from collections.abc import Sequence

from ecigdis_ws.domain import Mentions, ReplyPreview, UserId, excerpt
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.message_changes import live_message
from ecigdis_ws.services.roles import Roles
from ecigdis_ws.storage.base import ConversationRecords, MessageChangeRecords


class SendExtras:
    def __init__(
        self, *, changes: MessageChangeRecords, conversations: ConversationRecords, roles: Roles
    ) -> None:
        self._changes = changes
        self._conversations = conversations
        self._roles = roles

    async def reply_preview(self, conversation_id: int, reply_to_id: int) -> ReplyPreview:
        """The quoted message as `replyTo` shows it: NOT_FOUND unless this
        conversation has it, CONFLICT once it is deleted."""
        quoted = await live_message(self._changes, conversation_id, reply_to_id, "replyTo: ")
        return ReplyPreview(quoted.id, quoted.user_id, quoted.sender_name,
                            excerpt(quoted.text), deleted=False)

    async def mentions(
        self, conversation_id: int, sender: UserId, user_ids: Sequence[UserId], everyone: bool
    ) -> Mentions:
        """Members only (INVALID_PAYLOAD naming the first who is not); everyone only
        by an owner or admin (FORBIDDEN)."""
        if everyone:
            await self._roles.require_admin(conversation_id, sender, "mention everyone")
        if user_ids:
            members = {str(member) for member in
                       await self._conversations.member_ids(conversation_id)}
            for user_id in user_ids:
                if str(user_id) not in members:
                    raise ChatError(ErrorCode.INVALID_PAYLOAD,
                                    f"mentions: {user_id!r} is not a member of this conversation")
        return Mentions(tuple(user_ids), everyone)
