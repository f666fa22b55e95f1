"""The REST API beside the socket (docs/openapi.yaml): validate, call one
service method, reply. Failures carry the socket's error codes."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ecigdis_ws import json_codec
from ecigdis_ws.domain import Actor, Identity, SendResult
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.services.auth import (
    TokenExpired,
)
from ecigdis_ws.services.container import ChatServices
from ecigdis_ws.services.event_feed import CursorPruned, EventFeed
from ecigdis_ws.services.inbox import InboxService
from ecigdis_ws.services.long_poll import LongPollService
from ecigdis_ws.services.rate_limit import RateLimiter
from ecigdis_ws.services.server_api import NO_SOCKET, ServerApiService
from ecigdis_ws.settings import Settings
from ecigdis_ws.transport import validation as v
from ecigdis_ws.transport.app_keys import IN_FLIGHT, REST_SERVICES, SERVICES, SETTINGS
from ecigdis_ws.transport.connect_environ import bearer_token
from ecigdis_ws.transport.http_errors import answer
from ecigdis_ws.transport.limits import read_body
from ecigdis_ws.transport.origins import allowed_origins

log = get_logger(__name__)

USER_API = "/api/messenger"
SERVER_API = "/api/server"
# Messages per page: the default, and at most (the socket replays in pages of 500).
DEFAULT_PAGE = 50
MAX_PAGE = 500
# Browsers may cache a CORS preflight answer this long.
PREFLIGHT_MAX_AGE_S = 600


@dataclass(frozen=True)
class RestApi:
    chat: ChatServices
    requests: RateLimiter
    inbox: InboxService
    feed: EventFeed
    server: ServerApiService
    polls: LongPollService


REST_API = web.AppKey("rest_api", RestApi)


def _reply(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=json_codec.dumps)


# -- the middleware: errors as JSON, CORS for the user API ------------------------------


def rest_middleware(settings: Settings) -> Middleware:
    allowed = allowed_origins(settings)

    def cors_origin(request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin is None or not request.path.startswith(USER_API + "/"):
            return None
        return origin if allowed == "*" or origin in allowed else None

    @web.middleware
    async def rest(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if not path.startswith((USER_API + "/", SERVER_API + "/")):
            return await handler(request)
        origin = cors_origin(request)
        if request.method == "OPTIONS" and origin is not None:
            response: web.StreamResponse = web.Response(status=204, headers={
                "Access-Control-Allow-Methods": "GET, POST, DELETE",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
            })
        else:

            async def drained(request: web.Request) -> web.StreamResponse:
                return await _within_drain(request, handler)

            response = await answer(request, drained)
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    return rest


async def _within_drain(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The request inside the shutdown drain (transport/drain.py), as a socket
    event is: waited for on SIGTERM, or refused before anything is stored."""
    in_flight = request.app[IN_FLIGHT]
    in_flight.admit()
    with in_flight:
        return await handler(request)


# -- request parts ----------------------------------------------------------------------


def _api(request: web.Request) -> RestApi:
    return request.app[REST_API]


async def _identify(request: web.Request) -> Identity:
    """The user an `Authorization: Bearer` token names, checked as on the socket."""
    api = _api(request)
    header = request.headers.get("Authorization")
    if header is None:
        raise ChatError(ErrorCode.UNAUTHENTICATED, "send Authorization: Bearer <token>")
    token = bearer_token(header)
    if token is None:
        raise ChatError(ErrorCode.AUTH_FAILED, "expected Authorization: Bearer <token>")
    try:
        identity = await api.chat.sessions.identify(token, "rest", remote=request.remote)
    except TokenExpired:  # (the REST client refreshes on TOKEN_EXPIRED)
        raise ChatError(ErrorCode.TOKEN_EXPIRED, "token expired") from None
    if not api.requests.allow(identity.user_id):
        raise ChatError(ErrorCode.RATE_LIMITED, "too many requests")
    return identity


def _actor(identity: Identity) -> Actor:
    return Actor(NO_SOCKET, identity.user_id, identity.name)


def _require_server_key(request: web.Request) -> None:
    expected = request.app[SETTINGS].api_key
    if not expected:
        raise ChatError(ErrorCode.NOT_FOUND, "the server API is off: API_KEY is not set")
    given = request.headers.get("X-API-Key")
    if given is None:
        raise ChatError(ErrorCode.UNAUTHENTICATED, "send X-API-Key")
    # aiohttp reads header bytes that are not ASCII as surrogates ("\xff" is
    # "\udcff"), which .encode() refuses: a 500 for any such byte, before. Those
    # bytes back as they came, so every header is some bytes and compared as such.
    sent = given.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(sent, expected.encode()):
        raise ChatError(ErrorCode.AUTH_FAILED, "wrong API key")


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON body; read last, after every check that needs no body (the token,
    the path), so a refused request is answered before its body arrives."""
    settings = request.app[SETTINGS]
    raw = await read_body(request, settings.max_payload_bytes, _api(request).chat.clock,
                          settings.http_body_timeout_ms / 1000)
    try:
        data = json_codec.loads(raw)
    except json_codec.JsonTooDeep as exc:
        raise v.invalid(f"the body is not JSON this server reads: {exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise v.invalid("the body is not JSON") from None
    return v.payload(data)


def _path_id(request: web.Request, name: str) -> int:
    value = v.positive_id({name: request.match_info[name]}, name)
    assert value is not None
    return value


def _query_int(request: web.Request, name: str, low: int, high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not low <= int(raw) <= high:
        raise v.invalid(f"{name} must be an integer from {low} to {high}")
    return int(raw)


def _sent(result: SendResult, client_id: int | str) -> web.Response:
    return _reply(result.message.ack(result.duplicate, client_id),
                  status=200 if result.duplicate else 201)


# -- /api/messenger ---------------------------------------------------------------------


async def list_conversations(request: web.Request) -> web.Response:
    identity = await _identify(request)
    conversations = await _api(request).inbox.conversations(identity.user_id)
    return _reply({"conversations": [c.wire() for c in conversations]})


async def create_conversation(request: web.Request) -> web.Response:
    identity = await _identify(request)
    fields = await _body(request)
    title = v.title(fields)
    member_ids = v.member_ids(fields, request.app[SETTINGS].user_id_type)
    created = await _api(request).inbox.create(identity.user_id, title, member_ids)
    return _reply(created.wire(), status=201)


async def list_messages(request: web.Request) -> web.Response:
    identity = await _identify(request)
    conversation_id = _path_id(request, "conversationId")
    since = _query_int(request, "since", 0, v.MAX_ID)
    before = _query_int(request, "before", 1, v.MAX_ID)
    limit = _query_int(request, "limit", 1, MAX_PAGE) or DEFAULT_PAGE
    page = await _api(request).inbox.messages(
        identity.user_id, conversation_id, since, before, limit
    )
    return _reply(page.wire())


async def send_message(request: web.Request) -> web.Response:
    identity = await _identify(request)
    conversation_id = _path_id(request, "conversationId")
    fields = await _body(request)
    chat = _api(request).chat
    client_id, text = v.outgoing_message(fields, chat.settings.max_message_length)
    result = await chat.messages.post(_actor(identity), conversation_id, text, client_id)
    return _sent(result, client_id)


async def mark_read(request: web.Request) -> web.Response:
    identity = await _identify(request)
    conversation_id = _path_id(request, "conversationId")
    fields = await _body(request)
    message_id = v.positive_id(fields, "messageId")
    assert message_id is not None
    advanced = await _api(request).chat.receipts.mark_read(
        _actor(identity), conversation_id, message_id
    )
    return _reply({"advanced": advanced})


async def toggle_reaction(request: web.Request) -> web.Response:
    identity = await _identify(request)
    conversation_id = _path_id(request, "conversationId")
    message_id = _path_id(request, "messageId")
    emoji = v.emoji(await _body(request))
    action = await _api(request).chat.reactions.toggle(
        _actor(identity), conversation_id, message_id, emoji
    )
    return _reply({"action": action})


async def set_typing(request: web.Request) -> web.Response:
    """typing:start or typing:stop over REST: the socket's service methods, so the
    same membership rule and TYPING_TIMEOUT_MS end; the rate is the request bucket's
    (RATE_LIMIT_EVENTS per user, as the socket's per connection)."""
    identity = await _identify(request)
    conversation_id = _path_id(request, "conversationId")
    is_typing = v.flag(await _body(request), "isTyping")
    typing = _api(request).chat.typing
    if is_typing:
        await typing.start(_actor(identity), conversation_id)
    else:
        await typing.stop(_actor(identity), conversation_id)
    return _reply({"conversationId": conversation_id, "isTyping": is_typing})


async def presence(request: web.Request) -> web.Response:
    """presence:request's answer: the online users the caller may see (everyone,
    or under PRESENCE_SCOPE=contacts the caller and those sharing a conversation
    with them), or the online members of `conversationId`, at most
    PRESENCE_LIST_MAX."""
    identity = await _identify(request)
    conversation_id = _query_int(request, "conversationId", 1, v.MAX_ID)
    listing = await _api(request).chat.conversations.presence_list(
        _actor(identity), conversation_id
    )
    return _reply(listing.wire())


async def poll(request: web.Request) -> web.Response:
    identity = await _identify(request)
    raw = request.query.get("cursor")
    cursor = None if raw is None or raw == "" else _query_int(request, "cursor", 0, v.MAX_ID)
    try:
        answer = await _api(request).polls.poll(identity, cursor, request.query.get("live"))
    except CursorPruned as pruned:
        # docs/protocol.md, "Retention": catch up from history, poll on from here.
        return _reply({"cursor": str(pruned.position), "events": [], "resync": True})
    return _reply(answer.wire())


# -- /api/server ------------------------------------------------------------------------


async def post_system_message(request: web.Request) -> web.Response:
    _require_server_key(request)
    conversation_id = _path_id(request, "conversationId")
    fields = await _body(request)
    settings = request.app[SETTINGS]
    client_id, text = v.outgoing_message(fields, settings.max_message_length)
    raw_user = fields.get("userId")
    user_id = None if raw_user is None else v.user_id(raw_user, settings.user_id_type)
    name = v.sender_name(fields)
    result = await _api(request).server.post_message(
        conversation_id, client_id, text, user_id, name
    )
    return _sent(result, client_id)


async def add_member(request: web.Request) -> web.Response:
    _require_server_key(request)
    conversation_id = _path_id(request, "conversationId")
    user_id = v.user_id((await _body(request)).get("userId"), request.app[SETTINGS].user_id_type)
    added = await _api(request).server.add_member(conversation_id, user_id)
    return _reply({"conversationId": conversation_id, "userId": user_id, "changed": added})


async def remove_member(request: web.Request) -> web.Response:
    _require_server_key(request)
    conversation_id = _path_id(request, "conversationId")
    user_id = v.user_id(request.match_info["userId"], request.app[SETTINGS].user_id_type)
    removed = await _api(request).server.remove_member(conversation_id, user_id)
    return _reply({"conversationId": conversation_id, "userId": user_id, "changed": removed})


# -- wiring -----------------------------------------------------------------------------

Route = Callable[[web.Request], Awaitable[web.Response]]
ROUTES: tuple[tuple[str, str, Route], ...] = (
    ("GET", USER_API + "/conversations", list_conversations),
    ("POST", USER_API + "/conversations", create_conversation),
    ("GET", USER_API + "/conversations/{conversationId}/messages", list_messages),
    ("POST", USER_API + "/conversations/{conversationId}/messages", send_message),
    ("POST", USER_API + "/conversations/{conversationId}/read", mark_read),
    ("POST", USER_API + "/conversations/{conversationId}/messages/{messageId}/reactions",
     toggle_reaction),
    ("POST", USER_API + "/conversations/{conversationId}/typing", set_typing),
    ("GET", USER_API + "/presence", presence),
    ("GET", USER_API + "/poll", poll),
    ("POST", SERVER_API + "/conversations/{conversationId}/messages", post_system_message),
    ("POST", SERVER_API + "/conversations/{conversationId}/members", add_member),
    ("DELETE", SERVER_API + "/conversations/{conversationId}/members/{userId}", remove_member),
)


def add_rest_routes(app: web.Application) -> None:
    """The REST API, served by the services the wiring point built (app.py)."""
    settings = app[SETTINGS]
    app.middlewares.append(rest_middleware(settings))
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)

    async def start(app: web.Application) -> None:
        # An on_startup handler runs after every cleanup_ctx has started, so the
        # chat services exist by now.
        chat = app[SERVICES]
        rest = app[REST_SERVICES]
        app[REST_API] = RestApi(
            chat=chat,
            requests=RateLimiter(settings.rate_limit_events, chat.clock),
            inbox=rest.inbox,
            feed=rest.feed,
            server=rest.server,
            polls=rest.polls,
        )

    async def release_polls(app: web.Application) -> None:
        api = app.get(REST_API)
        if api is not None:
            api.feed.close()

    app.on_startup.append(start)
    app.on_shutdown.append(release_polls)


