"""Every Socket.IO event name of the protocol (docs/protocol.md), in one place.

Client events are what a client emits (each mounted from its declaration in
transport/operations.py); server events are what this server emits. The names are
the Node server's, so the existing client keeps working.
"""

from __future__ import annotations

from typing import Final

# -- client → server ------------------------------------------------------------------
AUTHENTICATE: Final = "authenticate"
CONVERSATION_JOIN: Final = "conversation:join"
CONVERSATION_LEAVE: Final = "conversation:leave"
CONVERSATION_UPDATE: Final = "conversation:update"
MESSAGE_SEND: Final = "message:send"
TYPING_START: Final = "typing:start"
TYPING_STOP: Final = "typing:stop"
MESSAGE_READ: Final = "message:read"
MESSAGE_REACT: Final = "message:react"
PRESENCE_REQUEST: Final = "presence:request"
MESSAGE_EDIT: Final = "message:edit"
MESSAGE_DELETE: Final = "message:delete"
MESSAGE_PIN: Final = "message:pin"
MESSAGE_UNPIN: Final = "message:unpin"
MESSAGE_VERSIONS: Final = "message:versions"
MEMBER_ADD: Final = "member:add"
MEMBER_REMOVE: Final = "member:remove"
MEMBER_ROLE: Final = "member:role"

# -- server → client ------------------------------------------------------------------
CONNECTED: Final = "connected"
AUTHENTICATED: Final = "authenticated"
ERROR: Final = "error"
MESSAGE_NEW: Final = "message:new"
MESSAGE_ACK: Final = "message:ack"
READ_RECEIPT: Final = "message:read-receipt"
REACTION: Final = "message:reaction"
TYPING_INDICATOR: Final = "typing:indicator"
USER_ONLINE: Final = "user:online"
USER_OFFLINE: Final = "user:offline"
PRESENCE_LIST: Final = "presence:list"
CONVERSATION_ADDED: Final = "conversation:added"
CONVERSATION_REMOVED: Final = "conversation:removed"
CONVERSATION_UPDATED: Final = "conversation:updated"
USER_JOINED: Final = "user:joined"
USER_LEFT: Final = "user:left"
MEMBER_ADDED: Final = "member:added"
MEMBER_REMOVED: Final = "member:removed"
MEMBER_UPDATED: Final = "member:updated"
MESSAGE_UPDATED: Final = "message:updated"
MESSAGE_DELETED: Final = "message:deleted"
MESSAGE_PINNED: Final = "message:pinned"
MESSAGE_UNPINNED: Final = "message:unpinned"
