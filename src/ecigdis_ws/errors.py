"""The error codes of docs/protocol.md, raised by services and turned into replies by transport."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    AUTH_FAILED = "AUTH_FAILED"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    INVALID_PAYLOAD = "INVALID_PAYLOAD"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    # The message or conversation is not in a state that allows it: deleted, past
    # the edit window, its pin limit reached, its last owner stepping down.
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


class ChatError(Exception):
    """A failure the client is told about, with one of the protocol's codes."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}

    def as_event(self, event: str | None) -> dict[str, str | None]:
        """The socket's `error` event: which client event failed, or None for what
        the server raises on its own (an expired or revoked token)."""
        return {"code": self.code.value, "message": self.message, "event": event}


class StorageUnavailable(Exception):
    """The database could not be reached in time; nothing was stored."""
