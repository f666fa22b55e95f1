"""What a client operation is, declared once for both transports.

An `Operation` names its Socket.IO events and its REST route, says who may call it,
and has one `handle`: validate the payload, call one service method, build the
reply. transport/socket_events.py and transport/rest_routes.py mount every
declaration of transport/chat_operations.py, and both run it through the one
pipeline (transport/pipeline.py): drain, identity and rate limit, log context,
metrics, error translation.

A handler sees the same payload whichever way the call came: the event's argument
on the socket; over REST the JSON body with the route's path parameters and its
declared query parameters laid over it (`{conversationId}` and the like already
validated, before the body is read, so a refused request never waits for one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ecigdis_ws.domain import Actor, Identity
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.container import ChatServices
from ecigdis_ws.services.server_api import NO_SOCKET

Reply = dict[str, Any]
# user: a signed-in user (a socket's session, or a REST bearer token); server: the
# main site's X-API-Key (/api/server); anyone: no identity yet (`authenticate`).
Caller = Literal["user", "server", "anyone"]
Transport = Literal["socket", "rest"]


async def _nothing_told(event: str, data: Any) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Call:
    """One call of an operation, whichever transport brought it."""

    chat: ChatServices
    data: Any
    transport: Transport
    # The caller: None for the server API, and on the socket before `authenticate`.
    identity: Identity | None = None
    sid: str | None = None  # the calling socket (None over REST)
    # Whether the caller reads the reply: an event that would repeat it is then
    # not sent (always true over REST, where the reply is the response).
    ack_wanted: bool = True
    # Sends an event to the calling socket only; over REST there is none to tell.
    tell: Callable[[str, Any], Awaitable[None]] = field(default=_nothing_told)

    def actor(self) -> Actor:
        """Who acts: the signed-in user, on this socket (or on none over REST)."""
        if self.identity is None:
            raise ChatError(ErrorCode.UNAUTHENTICATED, "authenticate first")
        return Actor(self.sid or NO_SOCKET, self.identity.user_id, self.identity.name)


@dataclass(frozen=True, slots=True)
class RestRoute:
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str
    # The success status, or how the reply decides it (a send: 201, or 200 when
    # the message was stored before).
    status: int | Callable[[Reply], int] = 200
    # Query parameters read into the payload: an integer within (low, high), or
    # None for the text as sent.
    query: Mapping[str, tuple[int, int] | None] = field(default_factory=dict)
    # A JSON object body is read (last, after every other check).
    body: bool = False


@dataclass(frozen=True, slots=True)
class SocketEvent:
    name: str
    # Fields this event fixes in its payload (typing:start is `isTyping: true`).
    preset: Mapping[str, Any] = field(default_factory=dict)


Handle = Callable[[Call], Awaitable[Reply]]
# A socket event's extra answer when it failed (a send's `message:ack` "failed").
SocketFailure = Callable[[Call, ChatError], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Operation:
    name: str  # for logs and metrics: the first socket event's, or the route's own
    handle: Handle
    caller: Caller = "user"
    events: tuple[SocketEvent, ...] = ()
    rest: RestRoute | None = None
    on_socket_failure: SocketFailure | None = None

    def payload_for(self, event: SocketEvent, data: Any) -> Any:
        """The event's argument with its preset fields (a payload that is not an
        object is left for the handler to refuse)."""
        if event.preset and isinstance(data, dict):
            return {**data, **event.preset}
        return data
