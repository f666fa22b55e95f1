"""Plain values passed between the layers; serialised to the wire shapes here only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

UserId = int | str
# A client's own message id as it sent it: compared as text, echoed as sent.
ClientMessageId = int | str
ReactionAction = Literal["added", "removed"]


def iso_ms(epoch_ms: int) -> str:
    """`2026-11-25T10:00:00.123Z`: ISO-8601 UTC with milliseconds, as PROTOCOL.md says."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token says the user is."""

    user_id: UserId
    name: str
    expires_at: float | None  # epoch seconds; None when the token has no exp


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    conversation_id: int
    user_id: UserId
    sender_name: str
    client_message_id: str
    text: str
    created_at_ms: int

    def wire(self, client_id: ClientMessageId | None = None) -> dict[str, Any]:
        """The `message:new` payload; `client_id` is the id as the client sent it."""
        return {
            "id": self.id,
            "messageId": self.client_message_id if client_id is None else client_id,
            "conversationId": self.conversation_id,
            "userId": self.user_id,
            "senderName": self.sender_name,
            "text": self.text,
            "createdAt": iso_ms(self.created_at_ms),
        }

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
