"""The Origin allowlist (CORS_ORIGINS), checked before Engine.IO sees a request.

Checked for the polling requests and the websocket upgrade alike, since a
websocket is not protected by the browser's CORS rules. A foreign Origin gets
403 and no session; a request without Origin (a native client, curl) passes.
python-engineio would answer 400 and only for some requests; doing it here
makes the answer the same on every path under /socket.io/.
"""

from __future__ import annotations

from aiohttp import web

from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.error_reports import ErrorReports
from ecigdis_ws.settings import Settings
from ecigdis_ws.transport.http_errors import Refusal, http_error

SOCKET_IO_PATH = "/socket.io/"


def allowed_origins(settings: Settings) -> list[str] | str:
    """'*' (every origin) or the exact list. An empty CORS_ORIGINS means every
    origin in development, and none (native clients only) in production."""
    if "*" in settings.cors_origins:
        return "*"
    if settings.cors_origins:
        return list(settings.cors_origins)
    return [] if settings.is_production else "*"


def origin_refusal(settings: Settings, reports: ErrorReports) -> Refusal:
    """The check, made by a middleware (`refusal_middleware`) and by the websocket
    entry (socketio_overrides/websocket_entry.py), which answers before the middlewares."""
    allowed = allowed_origins(settings)

    def refuse_foreign(request: web.Request) -> web.Response | None:
        origin = request.headers.get("Origin")
        if (
            origin is not None
            and allowed != "*"
            and origin not in allowed
            and request.path.startswith(SOCKET_IO_PATH)
        ):
            refused = ChatError(
                ErrorCode.FORBIDDEN, f"origin {origin[:200]!r} is not allowed"
            )
            return http_error(refused, reports)
        return None

    return refuse_foreign
