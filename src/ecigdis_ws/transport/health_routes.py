"""/health, /status and /metrics beside Socket.IO on the same port."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ecigdis_ws import __version__
from ecigdis_ws.errors import StorageUnavailable
from ecigdis_ws.transport.app_keys import CLUSTER, SERVICES, STARTED_AT


def _uptime(request: web.Request) -> float:
    return round(time.monotonic() - request.app[STARTED_AT], 3)


async def _dependencies(request: web.Request) -> tuple[str, str]:
    """("connected" or "disconnected", and Redis's status) after a round-trip to each."""
    try:
        await request.app[SERVICES].storage.ping()
        database = "connected"
    except StorageUnavailable:
        database = "disconnected"
    return database, await request.app[CLUSTER].redis_status()


async def health(request: web.Request) -> web.Response:
    database, redis = await _dependencies(request)
    healthy = database == "connected" and redis != "disconnected"
    body = {
        "status": "ok" if healthy else "degraded",
        "uptime": _uptime(request),
        "redis": redis,
        "database": database,
    }
    return web.json_response(body, status=200 if healthy else 503)


async def status(request: web.Request) -> web.Response:
    chat = request.app[SERVICES]
    return web.json_response({
        "connectedClients": chat.sessions.count,
        "uniqueUsers": chat.presence.user_count,
        "uptime": _uptime(request),
        "serverId": chat.server_id,
        "version": __version__,
    })


async def metrics(request: web.Request) -> web.Response:
    chat = request.app[SERVICES]
    database, redis = await _dependencies(request)
    chat.metrics.dependency_up.labels("database").set(database == "connected")
    if redis != "disabled":
        chat.metrics.dependency_up.labels("redis").set(redis == "connected")
    if request.query.get("format") == "json":
        return web.json_response(chat.metrics.as_json())
    return web.Response(
        body=chat.metrics.prometheus_text(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
