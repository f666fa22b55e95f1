"""Payload shapes of docs/protocol.md; anything else is INVALID_PAYLOAD."""

from __future__ import annotations

from typing import Any

from ecigdis_ws.domain import ROLES, Role, UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.auth import parse_user_id
from ecigdis_ws.settings import UserIdType
from ecigdis_ws.transport.emoji import is_emoji

# Ids are stored in signed 64-bit columns.
MAX_ID = 2**63 - 1
# docs/protocol.md: a client's messageId is at most 64 characters.
MAX_CLIENT_MESSAGE_ID = 64
# Enough for the longest emoji ZWJ sequences (families, flags with tags).
MAX_EMOJI_LENGTH = 32
# A conversation title fits the column (VARCHAR(255)).
MAX_TITLE_LENGTH = 255
# A sender name fits the column (VARCHAR(255)), as a token's name is cut to it.
MAX_SENDER_NAME = 255


def invalid(message: str) -> ChatError:
    return ChatError(ErrorCode.INVALID_PAYLOAD, message)


def payload(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise invalid("payload must be an object")
    return data


def encodable(value: str, field: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(f"{field} is not valid Unicode (lone surrogate)") from None
    return value


def positive_id(data: dict[str, Any], field: str, *, required: bool = True) -> int | None:
    """A positive integer, or a string of decimal digits read as one."""
    value = data.get(field)
    if value is None:
        if required:
            raise invalid(f"{field} is required")
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise invalid(f"{field} must be a positive integer")
    return value


def optional_flag(data: dict[str, Any], field: str) -> bool:
    """A boolean that may be absent (false)."""
    return field in data and flag(data, field)


def flag(data: dict[str, Any], field: str) -> bool:
    """A required true or false (not 0, 1 or "true")."""
    value = data.get(field)
    if not isinstance(value, bool):
        raise invalid(f"{field} must be true or false")
    return value


def since_id(data: dict[str, Any]) -> int | None:
    """`since` may be 0 (replay everything) as well as any message id."""
    value = data.get("since")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise invalid("since must be a message id (a non-negative integer)")
    return value


def cursor(data: dict[str, Any]) -> int | None:
    """An event-log position as the join's answer and the long-poll give it: a
    string of digits (or the integer)."""
    value = data.get("cursor")
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise invalid("cursor must be a position the server gave (a string of digits)")
    return value


def target_message_id(data: dict[str, Any], *, from_path: bool = False) -> int:
    """The server id of the message acted on: `id` on the socket (`messageId` when
    there is no `id`), the path's `{messageId}` over REST (`from_path`)."""
    found = positive_id(data, "id" if "id" in data and not from_path else "messageId")
    assert found is not None
    return found


def mentions(data: dict[str, Any], id_type: UserIdType, max_mentions: int) -> tuple[UserId, ...]:
    """`mentions`: at most MAX_MENTIONS distinct user ids (repeats count once)."""
    raw = data.get("mentions")
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > max_mentions:
        raise invalid(f"mentions must be a list of at most {max_mentions} user ids")
    return tuple(dict.fromkeys(user_id(item, id_type, "mentions[]") for item in raw))


def conversation_id(data: Any) -> int:
    value = positive_id(payload(data), "conversationId")
    assert value is not None
    return value


def text(data: dict[str, Any], max_length: int) -> str:
    value = data.get("text")
    if not isinstance(value, str):
        raise invalid("text must be a string")
    if not value.strip():
        raise invalid("text is empty")
    if len(value) > max_length:
        raise invalid(f"text is longer than {max_length} characters")
    return encodable(value, "text")


def outgoing_message(data: dict[str, Any], max_length: int) -> tuple[int | str, str]:
    """A message to send, over the socket or REST: the client's id and the text."""
    return client_message_id(data), text(data, max_length)


def client_message_id(data: dict[str, Any]) -> int | str:
    """The client's own id: a string or an integer, compared as text, echoed as sent."""
    value = data.get("messageId")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise invalid("messageId must be a string or an integer")
    if not echoable_message_id(value):
        raise invalid(f"messageId must be 1 to {MAX_CLIENT_MESSAGE_ID} characters")
    encodable(str(value), "messageId")
    return value


def echoable_message_id(value: int | str) -> bool:
    """1 to 64 characters as text; an int's size is checked before str() of it,
    which raises ValueError past Python's 4,300-digit limit."""
    if isinstance(value, int) and abs(value) >= 10**MAX_CLIENT_MESSAGE_ID:
        return False
    return 0 < len(str(value)) <= MAX_CLIENT_MESSAGE_ID


def emoji(data: dict[str, Any]) -> str:
    value = data.get("emoji")
    if not isinstance(value, str) or not value.strip():
        raise invalid("emoji must be a non-empty string")
    if len(value) > MAX_EMOJI_LENGTH:
        raise invalid(f"emoji is longer than {MAX_EMOJI_LENGTH} characters")
    if not is_emoji(value):  # (a lone surrogate is no emoji either)
        raise invalid("emoji must be one emoji (a single emoji grapheme cluster)")
    return value


def optional_conversation_id(data: Any) -> int | None:
    if data is None:
        return None
    return positive_id(payload(data), "conversationId", required=False)


def user_id(raw: Any, id_type: UserIdType, field: str = "userId") -> UserId:
    parsed = parse_user_id(raw, id_type)
    if parsed is None:
        raise invalid(f"{field} is not a valid user id ({id_type})")
    return parsed


def role(data: dict[str, Any]) -> Role:
    value = data.get("role")
    for known in ROLES:
        if value == known:
            return known
    raise invalid(f"role must be one of {', '.join(ROLES)}")


def title(data: dict[str, Any]) -> str:
    value = data.get("title", "")
    if not isinstance(value, str) or len(value) > MAX_TITLE_LENGTH:
        raise invalid(f"title must be a string of at most {MAX_TITLE_LENGTH} characters")
    return encodable(value, "title")


def new_title(data: dict[str, Any]) -> str:
    """A conversation's new title: required, not blank, at most MAX_TITLE_LENGTH."""
    if "title" not in data:
        raise invalid("title is required")
    value = title(data)
    if not value.strip():
        raise invalid("title must not be blank")
    return value


def member_ids(data: dict[str, Any], id_type: UserIdType) -> list[UserId]:
    members = data.get("members", [])
    if not isinstance(members, list):  # (how many: MAX_CONVERSATION_MEMBERS, in the service)
        raise invalid("members must be a list of user ids")
    return [user_id(member, id_type, "members[]") for member in members]


def sender_name(data: dict[str, Any]) -> str | None:
    name = data.get("senderName")
    if name is None:
        return None
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_SENDER_NAME:
        raise invalid(f"senderName must be a non-blank string of at most {MAX_SENDER_NAME}")
    return encodable(name, "senderName")
