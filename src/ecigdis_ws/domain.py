"""Plain values passed between the layers; serialised to the wire shapes here only."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ecigdis_ws import events

UserId = int | str
# A client's own message id as it sent it: compared as text, echoed as sent.
ClientMessageId = int | str
ReactionAction = Literal["added", "removed"]


def iso_ms(epoch_ms: int) -> str:
    """`2026-11-25T10:00:00.123Z`: ISO-8601 UTC with milliseconds, as docs/protocol.md says."""
    return _iso_second(epoch_ms // 1000) + f"{epoch_ms % 1000:03d}Z"


@functools.lru_cache(maxsize=64)
def _iso_second(epoch_s: int) -> str:
    # Every message in a second shares this part; formatting it is the costly bit.
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token says the user is."""

    user_id: UserId
    name: str
    expires_at: float | None  # epoch seconds; None when the token has no exp


Role = Literal["owner", "admin", "member"]
ROLES: tuple[Role, ...] = ("owner", "admin", "member")
# Characters of the quoted message a reply shows (`replyTo.excerpt`).
REPLY_EXCERPT_CHARS = 120


def excerpt(text: str) -> str:
    """A quoted message's text as a reply shows it: at most REPLY_EXCERPT_CHARS."""
    if len(text) <= REPLY_EXCERPT_CHARS:
        return text
    return text[:REPLY_EXCERPT_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class ReplyPreview:
    """The message a reply quotes, as it is now: its excerpt follows its edits, and
    is empty once it is deleted (or gone by retention, when only its id is left)."""

    id: int
    user_id: UserId | None
    sender_name: str
    excerpt: str
    deleted: bool

    def wire(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"id": self.id, "userId": self.user_id,
                                  "senderName": self.sender_name, "excerpt": self.excerpt}
        if self.deleted:
            answer["deleted"] = True
        return answer


@dataclass(frozen=True, slots=True)
class Mentions:
    """Whom a message calls by name: members, or everyone (admins only)."""

    user_ids: tuple[UserId, ...] = ()
    everyone: bool = False

    def __bool__(self) -> bool:
        return bool(self.user_ids) or self.everyone


NO_MENTIONS = Mentions()


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    conversation_id: int
    user_id: UserId
    sender_name: str
    client_message_id: str
    text: str  # as it is now: the latest edit's; "" once deleted
    created_at_ms: int
    version: int = 1  # 1 until edited; each edit adds one
    edited_at_ms: int | None = None
    deleted_at_ms: int | None = None  # a tombstone: kept for its id's place
    deleted_by: UserId | None = None  # (None for the server API's moderation too)
    reply_to: ReplyPreview | None = None
    mentions: Mentions = NO_MENTIONS

    @property
    def deleted(self) -> bool:
        return self.deleted_at_ms is not None

    def wire(self, client_id: ClientMessageId | None = None) -> dict[str, Any]:
        """The `message:new` payload; `client_id` is the id as the client sent it.
        A plain message is the Node server's shape exactly: the fields of edits,
        deletions, replies and mentions appear only on a message that has them."""
        wire: dict[str, Any] = {
            "id": self.id,
            "messageId": self.client_message_id if client_id is None else client_id,
            "conversationId": self.conversation_id,
            "userId": self.user_id,
            "senderName": self.sender_name,
            "text": self.text,
            "createdAt": iso_ms(self.created_at_ms),
        }
        if self.edited_at_ms is not None:
            wire["editedAt"] = iso_ms(self.edited_at_ms)
            wire["version"] = self.version
        if self.reply_to is not None:
            wire["replyTo"] = self.reply_to.wire()
        if self.mentions is not NO_MENTIONS:  # (one identity test for a plain message)
            if self.mentions.user_ids:
                wire["mentions"] = list(self.mentions.user_ids)
            if self.mentions.everyone:
                wire["mentionsEveryone"] = True
        if self.deleted_at_ms is not None:
            wire["deleted"] = True
            wire["deletedAt"] = iso_ms(self.deleted_at_ms)
            wire["deletedBy"] = self.deleted_by
        return wire

    def ack(self, duplicate: bool, client_id: ClientMessageId | None = None) -> dict[str, Any]:
        """The `message:ack` payload for a stored message."""
        reply: dict[str, Any] = {
            "messageId": self.client_message_id if client_id is None else client_id,
            "status": "sent",
            "id": self.id,
            "conversationId": self.conversation_id,
            "createdAt": iso_ms(self.created_at_ms),
        }
        if duplicate:
            reply["duplicate"] = True
        return reply


def message_updated_wire(message: StoredMessage) -> dict[str, Any]:
    """The `message:updated` payload: an edit, live and in every replay, with the
    message's text as it is now."""
    return {
        "id": message.id,
        "conversationId": message.conversation_id,
        "text": message.text,
        "editedAt": None if message.edited_at_ms is None else iso_ms(message.edited_at_ms),
        "version": message.version,
    }


def message_deleted_wire(
    conversation_id: int, message_id: int, deleted_by: UserId | None, deleted_at_ms: int
) -> dict[str, Any]:
    """The `message:deleted` payload (`deletedBy` null for the server API)."""
    return {"id": message_id, "conversationId": conversation_id,
            "deletedBy": deleted_by, "deletedAt": iso_ms(deleted_at_ms)}


def pin_wire(
    conversation_id: int, message_id: int, by: UserId | None, at_ms: int, pinned: bool
) -> dict[str, Any]:
    """`message:pinned` (`pinnedBy`, `pinnedAt`) or `message:unpinned` (`unpinnedBy`,
    `unpinnedAt`)."""
    verb = "pinned" if pinned else "unpinned"
    return {"id": message_id, "conversationId": conversation_id,
            f"{verb}By": by, f"{verb}At": iso_ms(at_ms)}


@dataclass(frozen=True, slots=True)
class MessageVersion:
    """An earlier text of an edited message, kept for disputes (admins and the
    server API read them); erased with the message."""

    version: int
    text: str
    written_at_ms: int
    replaced_at_ms: int

    def wire(self) -> dict[str, Any]:
        return {"version": self.version, "text": self.text,
                "writtenAt": iso_ms(self.written_at_ms),
                "replacedAt": iso_ms(self.replaced_at_ms)}


@dataclass(frozen=True, slots=True)
class ReactionCount:
    """One emoji on one message: who has it on, in the order they put it on."""

    emoji: str
    user_ids: tuple[UserId, ...]

    def wire(self) -> dict[str, Any]:
        return {"emoji": self.emoji, "count": len(self.user_ids), "userIds": list(self.user_ids)}


def with_reactions(message: StoredMessage, reactions: Sequence[ReactionCount]) -> dict[str, Any]:
    """A message as history shows it (REST pages, a `since` replay, the long-poll):
    the `message:new` payload with the message's reactions now (`[]` for none)."""
    wire = message.wire()
    wire["reactions"] = [reaction.wire() for reaction in reactions]
    return wire


@dataclass(frozen=True, slots=True)
class ReadPosition:
    """A member's read position in a conversation: None until their first receipt;
    read_at_ms None for a position recorded before the server kept its time."""

    user_id: UserId
    message_id: int | None
    read_at_ms: int | None

    def wire(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "messageId": self.message_id,
            "readAt": None if self.read_at_ms is None else iso_ms(self.read_at_ms),
        }


@dataclass(frozen=True, slots=True)
class Member:
    """A member of a conversation as a join shows them: name (the users table's,
    "" for one who never signed in), role and read position."""

    user_id: UserId
    name: str
    role: Role
    read: ReadPosition

    def wire(self) -> dict[str, Any]:
        return {"userId": self.user_id, "name": self.name, "role": self.role}


def reads_wire(positions: Sequence[ReadPosition]) -> list[dict[str, Any]]:
    """`reads`: the members who have read something, each with their position."""
    return [position.wire() for position in positions if position.message_id is not None]


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store, as `message:send` gave it."""

    conversation_id: int
    user_id: UserId
    sender_name: str
    client_message_id: str
    text: str
    created_at_ms: int
    reply_to: ReplyPreview | None = None  # checked: a live message of this conversation
    mentions: Mentions = NO_MENTIONS  # checked: members (everyone: by an admin)

    @property
    def key(self) -> tuple[str, str]:
        """What makes a send idempotent: (sender, client message id), as text."""
        return (str(self.user_id), self.client_message_id)


@dataclass(frozen=True, slots=True)
class SendResult:
    message: StoredMessage
    duplicate: bool


@dataclass(frozen=True, slots=True)
class OnlineUser:
    user_id: UserId
    name: str

    def wire(self) -> dict[str, Any]:
        return {"userId": self.user_id, "name": self.name}


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated socket an action comes from."""

    sid: str
    user_id: UserId
    name: str


# -- the REST API and its event log ---------------------------------------------------

EventKind = Literal[
    "message", "read", "reaction", "renamed", "edited", "deleted", "pinned", "unpinned"
]
MembershipKind = Literal["added", "removed"]


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One row of the event log the long-poll and a join's `cursor` replay read: a
    stored message, an advanced read position, a reaction toggle, a rename, an
    edit, a deletion or a pin, in the order they were committed."""

    id: int
    kind: EventKind
    conversation_id: int
    message_id: int
    user_id: UserId
    emoji: str | None
    action: ReactionAction | None
    created_at_ms: int
    # The message as it is now, for kinds "message" and "edited" (a deleted one: its
    # tombstone).
    message: StoredMessage | None
    # The message's reactions as the poll read them (kind "message" only).
    reactions: tuple[ReactionCount, ...] = ()
    title: str | None = None  # the conversation's title now (kind "renamed" only)

    @property
    def actor(self) -> UserId | None:
        """Who acted, for rows the server API may write ("" is the server API)."""
        return None if self.user_id == "" else self.user_id

    def wire(self) -> dict[str, Any]:
        """`{event, data}`: the socket event this row stands for, with its payload."""
        if self.kind == "message":
            assert self.message is not None
            return {"event": events.MESSAGE_NEW,
                    "data": with_reactions(self.message, self.reactions)}
        if self.kind == "read":
            return {"event": events.READ_RECEIPT, "data": read_receipt_wire(
                self.conversation_id, self.message_id, self.user_id, self.created_at_ms
            )}
        if self.kind == "renamed":
            return {"event": events.CONVERSATION_UPDATED, "data": conversation_updated_wire(
                self.conversation_id, self.title or "", self.actor
            )}
        if self.kind == "edited":
            assert self.message is not None
            return {"event": events.MESSAGE_UPDATED, "data": message_updated_wire(self.message)}
        if self.kind == "deleted":
            return {"event": events.MESSAGE_DELETED, "data": message_deleted_wire(
                self.conversation_id, self.message_id, self.actor, self.created_at_ms
            )}
        if self.kind in ("pinned", "unpinned"):
            pinned = self.kind == "pinned"
            return {"event": events.MESSAGE_PINNED if pinned else events.MESSAGE_UNPINNED,
                    "data": pin_wire(self.conversation_id, self.message_id, self.actor,
                                     self.created_at_ms, pinned)}
        return {"event": events.REACTION, "data": reaction_wire(
            self.conversation_id, self.message_id, self.user_id, self.emoji, self.action
        )}


def read_receipt_wire(
    conversation_id: int, message_id: int, user_id: UserId, read_at_ms: int
) -> dict[str, Any]:
    """The `message:read-receipt` payload: live, in the event log's replay and in the
    long-poll alike."""
    return {
        "messageId": message_id,
        "userId": user_id,
        "conversationId": conversation_id,
        "readAt": iso_ms(read_at_ms),
    }


def conversation_updated_wire(
    conversation_id: int, title: str, updated_by: UserId | None
) -> dict[str, Any]:
    """The `conversation:updated` payload: live, and in the long-poll (with the title
    the conversation has when the poll reads it); `updatedBy` null for the server API."""
    return {"conversationId": conversation_id, "title": title, "updatedBy": updated_by}


def reaction_wire(
    conversation_id: int,
    message_id: int,
    user_id: UserId,
    emoji: str | None,  # (never None for a reaction: the event log's columns are shared)
    action: ReactionAction | None,
) -> dict[str, Any]:
    """The `message:reaction` payload: live, in the event log's replay and in the
    long-poll alike."""
    return {
        "messageId": message_id,
        "emoji": emoji,
        "userId": user_id,
        "conversationId": conversation_id,
        "action": action,
    }


@dataclass(frozen=True, slots=True)
class ChangedBy:
    """Who changed a membership, for the event log and `addedBy`/`removedBy`: a
    user (creating a conversation over REST), or None for the main site acting
    through the server API, which speaks for no user."""

    user_id: UserId | None


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """A user added to or removed from a conversation: what that user's sockets
    hear (`conversation:added` / `conversation:removed`) and their long-poll
    carries. It names no user: it is addressed to the users it is about, so one
    change serves every member of a new conversation."""

    kind: MembershipKind
    conversation_id: int
    by: UserId | None  # ChangedBy.user_id
    title: str = ""  # (conversation:added only)
    members: tuple[UserId, ...] = ()  # (conversation:added only)

    @property
    def event(self) -> str:
        return events.CONVERSATION_ADDED if self.kind == "added" else events.CONVERSATION_REMOVED

    def data(self) -> dict[str, Any]:
        if self.kind == "removed":
            return {"conversationId": self.conversation_id, "removedBy": self.by}
        return {
            "conversationId": self.conversation_id,
            "title": self.title,
            "members": list(self.members),
            "addedBy": self.by,
        }


@dataclass(frozen=True, slots=True)
class LoggedMembership:
    """An event-log row of a membership change, for the user it is about."""

    id: int
    change: MembershipChange

    def wire(self) -> dict[str, Any]:
        return {"event": self.change.event, "data": self.change.data()}


# What one long-poll answer lists, in log order.
FeedEvent = LoggedEvent | LoggedMembership


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """One entry of a user's conversation list."""

    id: int
    title: str
    created_at_ms: int
    members: tuple[UserId, ...]
    unread_count: int
    last_read_message_id: int | None
    last_message: StoredMessage | None
    pinned: tuple[int, ...] = ()  # in the order they were pinned

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "createdAt": iso_ms(self.created_at_ms),
            "members": list(self.members),
            "unreadCount": self.unread_count,
            "lastReadMessageId": self.last_read_message_id,
            "lastMessage": None if self.last_message is None else self.last_message.wire(),
            "pinned": list(self.pinned),
        }
