"""Engine.IO requests for a session that has just gone, answered quietly.

At scale it is normal for a request to name a session that no longer exists:
a polling client's next GET is already on its way when its session closes (the
client said goodbye, its token was refused, its heartbeat timed out), and a
websocket upgrade may follow a session the server has just closed. python-engineio
answers such a request 400 but logs it at ERROR ("'Session is disconnected'",
"Invalid session"), and a POST for a session that closed while its body was
being read escapes as an exception. Here every such request is answered as the
Node.js server answers it (400, `{"code": 1, "message": "Session ID unknown"}`),
logged at DEBUG and counted in `ecigdis_ws_stale_session_requests_total`.

The middleware is installed twice (app.py): before the polling POST's body is
read, so a request for no session is never read at all, and right before
engineio, for a session that closed while the body was being read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import Counter

from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.transport.origins import SOCKET_IO_PATH

log = get_logger(__name__)

# Node's engine.io: Server.errors.UNKNOWN_SID, answered with 400.
UNKNOWN_SID = {"code": 1, "message": "Session ID unknown"}


def stale_session_middleware(
    sockets: Callable[[], Mapping[str, Any]], counter: Counter
) -> Middleware:
    """`sockets()` is engineio's live table of sessions by id."""

    @web.middleware
    async def refuse_stale(request: web.Request, handler: Handler) -> web.StreamResponse:
        sid = request.query.get("sid")
        if (sid is None or request.method not in ("GET", "POST")
                or not request.path.startswith(SOCKET_IO_PATH)):
            return await handler(request)  # (a handshake: no session yet)
        socket = sockets().get(sid)
        if socket is not None and not socket.closed:
            return await handler(request)
        counter.inc()
        log.debug("request for a session that is gone", method=request.method,
                  transport=request.query.get("transport"), known=socket is not None)
        return web.json_response(UNKNOWN_SID, status=400)

    return refuse_stale
