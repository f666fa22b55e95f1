"""What the services store, by topic: one small protocol per topic, each
implemented by one per-topic store of storage/sql.py's `SqlStorage`. A service
depends on the topics it uses, never on the whole database.

Every method raises StorageUnavailable when the database cannot answer within
the configured timeout; a read has then read nothing, and a write may still commit
after it (`MessageRecords.store_message` says how a repeat finds it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ecigdis_ws.domain import (
    NO_MENTIONS,
    ChangedBy,
    ConversationSummary,
    FeedEvent,
    LoggedEvent,
    Member,
    Mentions,
    MessageVersion,
    ReactionAction,
    ReactionCount,
    ReadPosition,
    ReplyPreview,
    Role,
    SendResult,
    StoredMessage,
    UserId,
)


class ConversationFull(Exception):
    """An add was refused, nothing written: the conversation has `max_members`."""

    def __init__(self, max_members: int) -> None:
        super().__init__(f"the conversation already has {max_members} members")
        self.max_members = max_members


class LastOwner(Exception):
    """A role change was refused, nothing written: it would leave no owner."""

    def __init__(self) -> None:
        super().__init__("the conversation's last owner cannot step down: make another one first")


class UserRecords(Protocol):
    """Users: names from the tokens, and when each was last online (storage/users.py)."""

    async def upsert_user(self, user_id: UserId, name: str, now_ms: int) -> None: ...

    async def set_last_seen(self, user_id: UserId, now_ms: int) -> None: ...


class ConversationRecords(Protocol):
    """Conversations and their members (storage/conversations.py)."""

    async def create_conversation(
        self, title: str, member_ids: Sequence[UserId], now_ms: int,
        changed_by: ChangedBy | None = None,
    ) -> int:
        """With `changed_by`, each member's `added` is written to the event log in
        the same transaction (a member's long-poll tells them)."""

    async def ensure_conversation(self, conversation_id: int, now_ms: int) -> None:
        """Create the conversation row with this id if it does not exist (open access)."""

    async def add_member(
        self, conversation_id: int, user_id: UserId, now_ms: int, max_members: int | None = None,
        changed_by: ChangedBy | None = None,
    ) -> bool:
        """True when the user was not a member before. With `max_members`, raises
        ConversationFull (and adds nobody) when a new member would exceed it. With
        `changed_by`, a new member's `added` is written to the event log."""

    async def add_members(
        self, conversation_id: int, user_ids: Sequence[UserId], now_ms: int
    ) -> int:
        """Add many in one statement (no cap: for operators' tools); how many were new."""

    async def remove_member(
        self, conversation_id: int, user_id: UserId, changed_by: ChangedBy | None = None,
        now_ms: int = 0,
    ) -> bool:
        """True when the user was a member before. With `changed_by`, a `removed`
        is written to the event log (whether or not a row went), at `now_ms`. A
        conversation its last owner left is owned by its longest-standing admin,
        else its longest-standing member, from the same transaction."""

    async def rename_conversation(
        self, conversation_id: int, title: str, changed_by: UserId, now_ms: int
    ) -> bool:
        """True when the title changed (it is logged for the long-poll); False when it
        was this title already, or there is no such conversation."""

    async def role_of(self, conversation_id: int, user_id: UserId) -> Role | None:
        """The member's role (owner, admin, member), None for a non-member."""

    async def set_role(self, conversation_id: int, user_id: UserId, role: Role) -> bool:
        """True when the member's role changed; raises LastOwner rather than leave a
        conversation with an owner without one."""

    async def members(self, conversation_id: int) -> list[Member]:
        """Every member with name, role and read position, in user-id order; one query."""

    async def conversation_title(self, conversation_id: int) -> str | None:
        """The conversation's title, or None when it does not exist."""

    async def is_member(self, conversation_id: int, user_id: UserId) -> bool: ...

    async def conversation_exists(self, conversation_id: int) -> bool: ...

    async def oldest_conversation_titled(self, title: str) -> int | None:
        """The lowest id of the conversations with this title (MariaDB compares titles
        case-insensitively), or None."""

    async def member_ids(self, conversation_id: int) -> list[UserId]: ...

    async def contact_ids(self, user_id: UserId) -> list[UserId]:
        """Everyone who shares a conversation with the user, the user excluded."""

    async def conversation_ids_of(self, user_id: UserId) -> set[int]:
        """The conversations the user is a member of."""


class SummaryRecords(Protocol):
    """A user's conversation list, with unread counts and last messages (storage/summaries.py)."""

    async def list_conversations(self, user_id: UserId, limit: int) -> list[ConversationSummary]:
        """The user's conversations with unread counts, most recently active first."""


class MessageRecords(Protocol):
    """Messages, stored once per (sender, client message id), in batches (storage/messages.py)."""

    async def store_message(
        self,
        conversation_id: int,
        user_id: UserId,
        sender_name: str,
        client_message_id: str,
        text: str,
        now_ms: int,
        deadline: float | None = None,
        reply_to: ReplyPreview | None = None,
        mentions: Mentions = NO_MENTIONS,
    ) -> SendResult:
        """Store once per (user_id, client_message_id); a repeat returns the first
        message with duplicate=True and stores nothing. `reply_to` and `mentions`
        were checked by the caller (a message of this conversation; members). Past
        `deadline` (a value of the storage's clock's monotonic()) the call raises
        TimeoutError; the row may still commit after that."""

    async def messages_after(
        self, conversation_id: int, after_id: int, limit: int
    ) -> list[StoredMessage]:
        """Messages with id > after_id, ascending, at most `limit`."""

    async def message_in_conversation(self, conversation_id: int, message_id: int) -> bool: ...

    async def messages_page(
        self, conversation_id: int, after_id: int | None, before_id: int | None, limit: int
    ) -> list[StoredMessage]:
        """Ascending. With after_id: the first `limit` above it (and below before_id);
        without: the last `limit` below before_id (or the newest)."""

    async def prune_messages(self, created_before_ms: int, batch: int) -> int:
        """Delete at most `batch` of the oldest messages created before the time,
        with their reactions; how many went."""


class MessageChangeRecords(Protocol):
    """A message after it is sent: edits, deletions, pins (storage/message_changes.py).
    Each change commits with its event-log row."""

    async def message(self, conversation_id: int, message_id: int) -> StoredMessage | None:
        """The message as it is now (a tombstone once deleted), None when the
        conversation has no such message."""

    async def edit_message(
        self, message: StoredMessage, text: str, now_ms: int
    ) -> StoredMessage | None:
        """The edited message; None, nothing written, when `message` (as read, by
        its version) changed or was deleted since."""

    async def delete_message(
        self, message: StoredMessage, deleted_by: UserId | None, now_ms: int
    ) -> bool:
        """Erase its text, versions, mentions, reactions and pin; False when deleted
        already."""

    async def scrub(self) -> None:
        """Leave what deletions erased in no file the database keeps (`scrub` of
        the engine); run once their rooms were told."""

    async def message_versions(self, message_id: int) -> list[MessageVersion]:
        """The texts its edits replaced, oldest first."""

    async def pin(
        self, message: StoredMessage, by: UserId | None, now_ms: int, max_pins: int
    ) -> bool:
        """True when it was not pinned; raises PinsFull past `max_pins`, and
        MessageDeleted when it was deleted since `message` was read."""

    async def unpin(self, message: StoredMessage, by: UserId | None, now_ms: int) -> bool:
        """True when it was pinned."""

    async def pinned_ids(self, conversation_id: int) -> list[int]:
        """The pinned messages, in the order they were pinned."""


class ReceiptRecords(Protocol):
    """Read positions, which only move forward (storage/receipts.py)."""

    async def advance_read(
        self, conversation_id: int, user_id: UserId, message_id: int, now_ms: int | None = None
    ) -> bool:
        """Move the member's read position up to message_id; never back. True if it
        moved (and then the event log records it, read at `now_ms`)."""

    async def last_read(self, conversation_id: int, user_id: UserId) -> int | None: ...

    async def read_positions(self, conversation_id: int) -> list[ReadPosition]:
        """Every member with their read position (None for one who has read
        nothing), in user-id order; one query."""


class ReactionRecords(Protocol):
    """Each user's emoji on a message (storage/receipts.py)."""

    async def toggle_reaction(
        self, message_id: int, user_id: UserId, emoji: str, now_ms: int
    ) -> ReactionAction: ...

    async def reactions(self, message_id: int) -> list[tuple[UserId, str]]: ...

    async def reactions_of(
        self, message_ids: Sequence[int]
    ) -> dict[int, tuple[ReactionCount, ...]]:
        """The reactions on these messages in ONE query, each message's emoji in the
        order of first use; a message without any is absent. Sees every committed
        toggle."""


class EventRecords(Protocol):
    """The event log the long-poll reads, and its retention (storage/event_log.py)."""

    async def event_log_last_id(self) -> int:
        """The highest event id written so far (0 for an empty log)."""

    async def event_log_ids(self, after_id: int, limit: int) -> list[tuple[int, int]]:
        """(id, created_at_ms) of the events after after_id, ascending, at most `limit`."""

    async def event_log_id_before(self, created_before_ms: int) -> int:
        """The id of the latest event created at or before that time (0: none)."""

    async def events_for_user(
        self, user_id: UserId, after_id: int, up_to_id: int, limit: int
    ) -> list[FeedEvent]:
        """Events in after_id < id <= up_to_id of the conversations the user is a
        member of, and the user's own membership changes, ascending, at most `limit`."""

    async def conversation_events(
        self, conversation_id: int, after_id: int, limit: int, with_messages: bool = True
    ) -> list[LoggedEvent]:
        """The conversation's changes after `after_id` (messages unless not
        `with_messages`, reactions, renames, edits, deletions, pins; not read
        positions), ascending, at most `limit`, each message as it is now: what a
        join with `cursor` replays."""

    async def event_log_pruned_through(self) -> int:
        """The highest event id retention has deleted (0: none); a cursor below it
        may have missed events."""

    async def prune_event_log(self, created_before_ms: int, batch: int) -> int:
        """Delete at most `batch` of the oldest events created before the time (the
        newest event is always kept); how many went."""


class Storage(Protocol):
    """The database, topic by topic, and its lifecycle."""

    @property
    def users(self) -> UserRecords: ...

    @property
    def conversations(self) -> ConversationRecords: ...

    @property
    def summaries(self) -> SummaryRecords: ...

    @property
    def messages(self) -> MessageRecords: ...

    @property
    def changes(self) -> MessageChangeRecords: ...

    @property
    def receipts(self) -> ReceiptRecords: ...

    @property
    def reactions(self) -> ReactionRecords: ...

    @property
    def events(self) -> EventRecords: ...


    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied now (none: up to date)."""

    async def pending_migrations(self) -> list[int]:
        """Versions not yet applied."""

    async def ping(self) -> None:
        """Round-trip to the database; raises StorageUnavailable when it cannot."""

    async def close(self) -> None: ...
