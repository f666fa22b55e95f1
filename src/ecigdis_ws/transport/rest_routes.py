"""The REST transport (docs/openapi.yaml): every operation with a route, mounted
from its declaration (transport/chat_operations.py) and run through the one
pipeline (transport/pipeline.py) after this transport's own step — the bearer
token or the server API's key, the user's RATE_LIMIT_EVENTS bucket, the path and
query parameters, then the body. Failures carry the socket's error codes, as
HTTP statuses (transport/http_errors.py)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ecigdis_ws import json_codec
from ecigdis_ws.domain import Identity
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.auth import TokenExpired
from ecigdis_ws.services.container import ChatServices
from ecigdis_ws.services.event_feed import EventFeed
from ecigdis_ws.services.rate_limit import RateLimiter
from ecigdis_ws.settings import Settings
from ecigdis_ws.transport import validation as v
from ecigdis_ws.transport.app_keys import SETTINGS
from ecigdis_ws.transport.chat_operations import OPERATIONS, SERVER_API, USER_API
from ecigdis_ws.transport.connect_environ import bearer_token
from ecigdis_ws.transport.http_errors import answer
from ecigdis_ws.transport.limits import read_body
from ecigdis_ws.transport.operations import Call, Operation, RestRoute
from ecigdis_ws.transport.origins import allowed_origins
from ecigdis_ws.transport.pipeline import Pipeline

# Browsers may cache a CORS preflight answer this long.
PREFLIGHT_MAX_AGE_S = 600


@dataclass(frozen=True)
class RestApi:
    """What the REST routes serve with, built by the composition root (app.py)."""

    chat: ChatServices
    pipeline: Pipeline
    requests: RateLimiter  # RATE_LIMIT_EVENTS per user, whichever route

    @property
    def feed(self) -> EventFeed:
        return self.chat.feed


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
                "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
            })
        else:
            response = await answer(request, handler)
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    return rest


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


def _path_values(request: web.Request) -> dict[str, Any]:
    """The route's path parameters: ids checked now, before any body is read
    (`userId` as the handler reads it, by USER_ID_TYPE)."""
    values: dict[str, Any] = {}
    for name, raw in request.match_info.items():
        values[name] = raw if name == "userId" else _path_id(request, name)
    return values


Route = Callable[[web.Request], Awaitable[web.Response]]


def _mount(operation: Operation, route: RestRoute) -> Route:
    async def handle(request: web.Request) -> web.Response:
        api = _api(request)

        async def admit() -> Call:
            identity = None
            if operation.caller == "server":
                _require_server_key(request)
            else:
                identity = await _identify(request)
            given = _path_values(request)
            for name, bounds in route.query.items():
                given[name] = request.query.get(name) if bounds is None else _query_int(
                    request, name, *bounds)
            # The body last; what the path and the query say wins over its fields.
            data = {**(await _body(request)), **given} if route.body else given
            return Call(api.chat, data, "rest", identity)

        _, answer = await api.pipeline.run(
            operation, operation.name, admit, "HTTP request", path=request.path
        )
        if isinstance(answer, ChatError):
            raise answer  # answered by the middleware, as every error under the API
        status = route.status if isinstance(route.status, int) else route.status(answer)
        return _reply(answer, status)

    return handle


def add_rest_routes(app: web.Application) -> None:
    """The REST API: every declared operation with a route, served by the services
    the composition root built (app.py)."""
    settings = app[SETTINGS]
    app.middlewares.append(rest_middleware(settings))
    for operation in OPERATIONS:
        if operation.rest is not None:
            app.router.add_route(operation.rest.method, operation.rest.path,
                                 _mount(operation, operation.rest))

    async def release_polls(app: web.Application) -> None:
        api = app.get(REST_API)
        if api is not None:
            api.chat.feed.close()

    app.on_shutdown.append(release_polls)
