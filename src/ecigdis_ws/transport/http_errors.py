"""Every error this server answers over HTTP, in one shape:
`{"error": {"code", "message"}}` with the status of its code.

The REST API and the checks in front of Engine.IO (the Origin allowlist, the
per-address cap, the bounds on a polling POST) all answer through `http_error`,
which counts the answer (services/error_reports.py) as the socket's errors are.
The one answer in another shape is Engine.IO's own "Session ID unknown"
(transport/stale_sessions.py), which repeats the Node server's byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ecigdis_ws import json_codec
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.error_reports import ErrorReports
from ecigdis_ws.transport.app_keys import SERVICES

STATUS = {
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.AUTH_FAILED: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.INVALID_PAYLOAD: 400,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}
# A check in front of Engine.IO: the refusal to answer a request with, or None to
# let it through.
Refusal = Callable[[web.Request], web.Response | None]
# A token bucket refills at least one request a second (rates are whole numbers).
RETRY_AFTER_S = 1


class HttpRefusal(ChatError):
    """An error whose HTTP status says more than its code's (413 for a body too
    large, 408 for one too slow, 405 ...); `close` ends the connection after the
    answer, for a request whose unread rest would otherwise be read as the next."""

    def __init__(
        self, code: ErrorCode, message: str, status: int, *, close: bool = False
    ) -> None:
        super().__init__(code, message)
        self.status = status
        self.close = close


def invalid_body(message: str, status: int = 400, *, close: bool = False) -> HttpRefusal:
    return HttpRefusal(ErrorCode.INVALID_PAYLOAD, message, status, close=close)


def http_error(error: ChatError, reports: ErrorReports) -> web.Response:
    reports.count(error)
    refusal = error if isinstance(error, HttpRefusal) else None
    response = web.json_response(
        {"error": error.as_dict()},
        status=refusal.status if refusal else STATUS[error.code],
        dumps=json_codec.dumps,
    )
    if refusal is not None and refusal.close:
        response.force_close()  # `Connection: close`
    if error.code == ErrorCode.RATE_LIMITED:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


async def answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """`handler`'s response, or the error it raised as this module's answer: a
    route that does not exist (or lacks the method) included, so nothing under
    an API path answers aiohttp's plain-text pages."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        error = ChatError(ErrorCode.NOT_FOUND, f"no route {request.path[:200]}")
    except web.HTTPMethodNotAllowed as exc:
        error = HttpRefusal(
            ErrorCode.INVALID_PAYLOAD, f"{request.method} is not allowed here", exc.status
        )
    except web.HTTPException:
        raise
    except Exception as exc:
        error = request.app[SERVICES].errors.translate(exc, "HTTP request", path=request.path)
    return http_error(error, request.app[SERVICES].errors)


def refusal_middleware(refusal: Refusal) -> Middleware:
    """A middleware that answers with `refusal`'s answer, when it has one."""

    @web.middleware
    async def refuse(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = refusal(request)
        return refused if refused is not None else await handler(request)

    return refuse
