"""The per-address cap, applied to an Engine.IO handshake before engineio sees it.

A handshake is a `/socket.io/` request without a `sid` (polling's first GET, or a
websocket opened directly). Past MAX_UNAUTHENTICATED_PER_IP connections from one
address that have not authenticated yet, it is answered 429 and nothing is
allocated for it; socket.io-client retries with its reconnection backoff.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.container import ChatServices
from ecigdis_ws.transport.connect_environ import request_address
from ecigdis_ws.transport.http_errors import Refusal, http_error
from ecigdis_ws.transport.origins import SOCKET_IO_PATH

TOO_MANY = "too many connections from this address"


def admission_refusal(services: Callable[[], ChatServices], trust_proxy: bool) -> Refusal:
    """The check, made by a middleware (`refusal_middleware`) and by the websocket
    entry (socketio_overrides/websocket_entry.py), which answers before the middlewares."""

    def refuse_crowded(request: web.Request) -> web.Response | None:
        if (request.path.startswith(SOCKET_IO_PATH) and "sid" not in request.query
                and not services().admission.has_room(request_address(request, trust_proxy))):
            return http_error(ChatError(ErrorCode.RATE_LIMITED, TOO_MANY), services().errors)
        return None

    return refuse_crowded
