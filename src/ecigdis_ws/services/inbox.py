"""What the REST API reads and creates beyond the socket's events: a user's
conversation list with unread counts, new conversations, pages of messages."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import (
    ChangedBy,
    ConversationSummary,
    Member,
    MembershipChange,
    ReactionCount,
    ReadPosition,
    StoredMessage,
    UserId,
    reads_wire,
    with_reactions,
)
from ecigdis_ws.fanout.base import Fanout
from ecigdis_ws.services.access import AccessPolicy
from ecigdis_ws.services.member_rules import MemberRules
from ecigdis_ws.services.membership_events import tell_users
from ecigdis_ws.storage.base import (
    ConversationRecords,
    MessageRecords,
    ReactionRecords,
    SummaryRecords,
)

# Conversations in one listing, most recently active first: a staff member is in
# tens; the bound only keeps one request's work finite.
MAX_LISTED_CONVERSATIONS = 1000


@dataclass(frozen=True)
class MessagePage:
    """A page of history with its state: each message's reactions now, and every
    member's read position (for "Seen by")."""

    messages: list[StoredMessage]
    has_more: bool  # more lie beyond it: after it with `since`, before it otherwise
    reactions: dict[int, tuple[ReactionCount, ...]]
    members: list[Member]  # with their read positions, for "Seen by"

    @property
    def reads(self) -> list[ReadPosition]:
        return [member.read for member in self.members]

    def wire(self) -> dict[str, Any]:
        return {
            "messages": [
                with_reactions(message, self.reactions.get(message.id, ()))
                for message in self.messages
            ],
            "hasMore": self.has_more,
            "reads": reads_wire(self.reads),
            "members": [member.wire() for member in self.members],
        }


# Creates that may wait for the database writer at once. A create of a large
# conversation holds the writer for tens of milliseconds: the others queue here, not
# in the writer's own queue, so a send waits behind at most one of them (a flood of
# 40 creates of 1,000 members once kept a send waiting past DB_TIMEOUT_MS).
CREATES_AT_ONCE = 1


class InboxService:
    def __init__(
        self,
        *,
        conversations: ConversationRecords,
        messages: MessageRecords,
        reactions: ReactionRecords,
        summaries: SummaryRecords,
        access: AccessPolicy,
        clock: Clock,
        rules: MemberRules,
        fanout: Fanout,
    ) -> None:
        self._creating = asyncio.Semaphore(CREATES_AT_ONCE)
        self._fanout = fanout
        self._conversations = conversations
        self._messages = messages
        self._reactions = reactions
        self._summaries = summaries
        self._access = access
        self._clock = clock
        self._rules = rules

    async def conversations(self, user_id: UserId) -> list[ConversationSummary]:
        return await self._summaries.list_conversations(user_id, MAX_LISTED_CONVERSATIONS)

    async def create(
        self, user_id: UserId, title: str, members: Sequence[UserId]
    ) -> ConversationSummary:
        """A new conversation of `members` and its creator; refused, with nothing
        written, past MAX_CONVERSATION_MEMBERS, MEMBER_ADD_POLICY or
        RATE_LIMIT_CONVERSATIONS. Every member's sockets, the creator's included
        (their other tabs), hear `conversation:added` with `addedBy` the creator."""
        everyone = list(dict.fromkeys([user_id, *members]))
        await self._rules.check_create(user_id, everyone)
        now_ms = int(self._clock.now() * 1000)
        async with self._creating:
            conversation_id = await self._conversations.create_conversation(
                title, everyone, now_ms, ChangedBy(user_id)
            )
        in_order = tuple(sorted(everyone, key=str))  # the listing's order
        await tell_users(
            self._fanout,
            MembershipChange("added", conversation_id, user_id, title, in_order),
            everyone,
        )
        return ConversationSummary(
            id=conversation_id,
            title=title,
            created_at_ms=now_ms,
            members=in_order,
            unread_count=0,
            last_read_message_id=None,
            last_message=None,
        )

    async def messages(
        self,
        user_id: UserId,
        conversation_id: int,
        since: int | None,
        before: int | None,
        limit: int,
    ) -> MessagePage:
        """A page, ascending, with its reactions and the read positions. Members
        only, like conversation:join."""
        await self._access.require_member(conversation_id, user_id)
        page = await self._messages.messages_page(conversation_id, since, before, limit + 1)
        more = len(page) > limit
        if more:
            page = page[:limit] if since is not None else page[1:]
        return MessagePage(
            page,
            more,
            await self._reactions.reactions_of([message.id for message in page]),
            await self._conversations.members(conversation_id),
        )
