"""Build the aiohttp application: Socket.IO, HTTP routes, storage and services."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from ecigdis_ws import json_codec
from ecigdis_ws.clock import Clock, SystemClock
from ecigdis_ws.cluster.redis_connection import key_base
from ecigdis_ws.cluster.setup import ClusterState
from ecigdis_ws.fanout.channels import ChannelNames
from ecigdis_ws.fanout.notifier import DeliveryNotifier
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.observability.metrics import Metrics
from ecigdis_ws.services.container import ChatServices, Gates
from ecigdis_ws.services.main_site import MainSiteVerifier
from ecigdis_ws.services.rate_limit import RateLimiter
from ecigdis_ws.settings import Settings
from ecigdis_ws.storage.base import Storage
from ecigdis_ws.storage.factory import open_storage
from ecigdis_ws.transport.admission_gate import UpgradeAdmission, admission_refusal
from ecigdis_ws.transport.app_keys import (
    CLUSTER,
    IN_FLIGHT,
    MAIN_SITE,
    SERVICES,
    SETTINGS,
    STARTED_AT,
    STORAGE,
)
from ecigdis_ws.transport.client_routes import add_client_routes
from ecigdis_ws.transport.drain import InFlight
from ecigdis_ws.transport.health_routes import add_routes
from ecigdis_ws.transport.http_errors import refusal_middleware
from ecigdis_ws.transport.limits import polling_limits_middleware
from ecigdis_ws.transport.malformed_http import quiet_malformed_http
from ecigdis_ws.transport.origins import allowed_origins, origin_refusal
from ecigdis_ws.transport.pipeline import Pipeline
from ecigdis_ws.transport.protocol_errors import ProtocolErrors
from ecigdis_ws.transport.rest_routes import REST_API, RestApi, add_rest_routes
from ecigdis_ws.transport.socket_events import SocketEvents
from ecigdis_ws.transport.socketio_overrides.managers import DirectEmitManager, SocketIOFanout
from ecigdis_ws.transport.socketio_overrides.polling import TransportLimits
from ecigdis_ws.transport.socketio_overrides.redis_manager import ClusterRedisManager
from ecigdis_ws.transport.socketio_overrides.server import SOCKET_SERVER, ChatSocketServer
from ecigdis_ws.transport.socketio_overrides.websocket_entry import websocket_entry_middleware
from ecigdis_ws.transport.stale_sessions import stale_session_middleware

log = get_logger(__name__)


class NotMigrated(RuntimeError):
    """The database lacks migrations; `serve` refuses rather than fail on first use."""


def fanout_manager(
    settings: Settings,
    clock: Clock,
    metrics: Metrics,
    notifier: DeliveryNotifier,
    on_recovered: Callable[[], Awaitable[None]],
) -> ClusterRedisManager | None:
    """python-socketio's client manager for several nodes; None for a single node."""
    url = settings.effective_redis_url
    if url is None:
        return None
    names = ChannelNames(
        everyone=f"{key_base(settings.redis_key_prefix, url)}:fanout",
        room_base=settings.redis_key_prefix,
        per_room=settings.fanout_channels == "per-room",
    )
    return ClusterRedisManager(
        url, names,
        key=settings.effective_cluster_secret,
        timeout_s=settings.redis_timeout_ms / 1000,
        clock=clock,
        linger_s=settings.fanout_unsubscribe_delay_ms / 1000,
        metrics=metrics,
        notifier=notifier,
        on_recovered=on_recovered,
    )


def build_socketio(
    settings: Settings,
    clock: Clock,
    metrics: Metrics,
    manager: DirectEmitManager | None = None,  # None: this node alone
    notifier: DeliveryNotifier | None = None,
) -> ChatSocketServer:
    return ChatSocketServer(
        clock=clock,
        protocol_errors=ProtocolErrors(metrics.protocol_errors),
        client_manager=manager or DirectEmitManager(notifier=notifier,
                                                    deliveries=metrics.deliveries),
        limits=TransportLimits(
            max_buffered_bytes=settings.ws_max_buffered_bytes,
            max_buffered_packets=settings.max_buffered_packets,
        ),
        upgrade_timeout_s=settings.upgrade_timeout_ms / 1000,
        direct_websockets=not settings.ws_compression,
        async_mode="aiohttp",
        # One socket's events are handled strictly in order (docs/protocol.md): run each
        # handler to completion before reading that socket's next packet.
        async_handlers=False,
        # Refusals happen in origin_refusal; engineio only adds CORS headers.
        cors_allowed_origins=allowed_origins(settings) or "*",
        ping_interval=settings.ping_interval_ms / 1000,
        ping_timeout=settings.ping_timeout_ms / 1000,
        max_http_buffer_size=settings.max_payload_bytes,
        json=json_codec,
        logger=False,
        engineio_logger=False,
    )


def connection_deadlines(settings: Settings) -> dict[str, float]:
    """Keyword arguments of aiohttp's per-connection protocol (web_protocol.
    RequestHandler), given to the Application as `handler_args` so that run_app
    (`serve`) and an AppRunner (the tests) build connections alike."""
    return {
        # aiohttp closes a connection that has no complete request head this long
        # after it opened or after its last answer: an idle keep-alive and a head
        # trickled byte by byte alike (aiohttp has no separate head deadline). It is
        # not armed while a request is handled: long-polls and websockets are not cut.
        "keepalive_timeout": settings.http_keepalive_timeout_ms / 1000,
        # A body left unread by an answer given before it (401, 400 for a gone
        # session) is read and dropped at most this long, so the client can read
        # the answer before the connection closes; then it is closed.
        "lingering_time": settings.http_body_timeout_ms / 1000,
    }


def create_app(settings: Settings, clock: Clock | None = None) -> web.Application:
    """The composition root: every resource and service of one node, built once in
    dependency order. Each resource is opened and closed by a cleanup_ctx of its
    own (storage, the cluster state, the main site's client, the services), in
    that order, and closed in the reverse."""
    clock = clock or SystemClock()
    quiet_malformed_http()
    metrics = Metrics()
    notifier = DeliveryNotifier()  # told of every delivery here, whichever node sent it

    async def fanout_recovered() -> None:
        # Like Centrifugo's "insufficient state": this node's clients missed what
        # other nodes published while the channel was down. Closing their
        # transports makes them reconnect and rejoin with `since`, which replays
        # the gap from the database; the presence lease is renewed at once.
        log.warning("fan-out channel recovered: asking clients to resync",
                    clients=len(sio.eio.sockets))
        await app[SERVICES].presence.beat_now()
        await sio.close_transports()

    manager = fanout_manager(settings, clock, metrics, notifier, fanout_recovered)
    sio = build_socketio(settings, clock, metrics, manager, notifier)
    fanout = SocketIOFanout(sio)
    gates = Gates.build(settings=settings, clock=clock, metrics=metrics, fanout=fanout,
                        close_connection=sio.close_unadmitted)
    # (python-socketio's own pattern: the server exists before what it calls back.)
    sio.session_policy.upgrades = UpgradeAdmission(gates.admission, gates.errors,
                                                   settings.trust_proxy)
    cluster = ClusterState.open(settings, manager.ping if manager is not None else None)
    in_flight = InFlight()  # socket events and REST requests: one drain on SIGTERM

    stale = stale_session_middleware(lambda: sio.eio.sockets, metrics.stale_session_requests)
    origin_check = origin_refusal(settings, gates.errors)
    admission_check = admission_refusal(gates.admission, gates.errors, settings.trust_proxy)
    # First: a new websocket connection is answered there, after the same two checks,
    # so that no other middleware's coroutine stays suspended for its life.
    entry = websocket_entry_middleware(sio, [origin_check, admission_check])
    app = web.Application(middlewares=[
        *([entry] if entry is not None else []),
        refusal_middleware(origin_check),
        refusal_middleware(admission_check),
        stale,  # before a polling body is read: a request for no session is not read
        polling_limits_middleware(settings.max_payload_bytes, sio.drop_session, sio.refuse,
                                  clock, settings.http_body_timeout_ms / 1000, gates.errors),
        stale,  # and again, for a session that closed while its body was read
    ], handler_args=connection_deadlines(settings))
    app[SETTINGS] = settings
    app[CLUSTER] = cluster
    app[STARTED_AT] = time.monotonic()
    app[SOCKET_SERVER] = sio
    app[IN_FLIGHT] = in_flight
    sio.attach(app)
    add_routes(app)
    add_rest_routes(app)  # docs/openapi.yaml
    add_client_routes(app, settings)

    async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
        storage = await open_storage(settings, clock)
        try:
            await _migrated(storage, settings)
            app[STORAGE] = storage
            yield
        finally:
            await storage.close()

    async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await cluster.close()

    async def main_site_ctx(app: web.Application) -> AsyncIterator[None]:
        if not settings.auth_verify_url:
            yield
            return
        async with aiohttp.ClientSession() as http:
            app[MAIN_SITE] = MainSiteVerifier(
                settings.auth_verify_url, http, clock, settings.auth_verify_timeout_ms / 1000,
                settings.auth_verify_cache_s, settings.user_id_type,
            )
            yield

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        services = ChatServices.build(
            settings=settings, clock=clock, storage=app[STORAGE], fanout=fanout,
            metrics=metrics, presence_registry=cluster.presence, typing_store=cluster.typing,
            notifier=notifier, gates=gates, main_site=app.get(MAIN_SITE),
        )
        # Every operation's one pipeline, for the socket and REST alike.
        pipeline = Pipeline(in_flight, metrics.events_received, services.errors)
        SocketEvents(sio, services, pipeline).register()
        app[SERVICES] = services
        app[REST_API] = RestApi(services, pipeline, RateLimiter(settings.rate_limit_events, clock))
        sio.start_manager()
        await services.presence.start()
        services.typing.start_sweeping()
        services.retention.start()
        metrics.track_connections(
            lambda: services.sessions.count, lambda: services.presence.user_count
        )
        if settings.uses_dev_secret:
            log.warning("JWT_SECRET is not set: using the development secret, "
                        "which production refuses")
        yield
        services.typing.stop_sweeping()
        services.retention.stop()
        await services.presence.stop()
        await services.tasks.cancel_all()
        if manager is not None:  # the last sends and the offline announcements
            await manager.flush_publishes()

    async def close_connections(app: web.Application) -> None:
        # The listener is closed already; let socket events and REST requests in
        # flight finish (a send stored is acknowledged, and fanned out to sockets
        # still open) and refuse new ones with UNAVAILABLE.
        if not await in_flight.drain(settings.shutdown_timeout_ms / 1000):
            log.warning("shutdown timeout: closing with events still running",
                        running=in_flight.running)
        # Close at the Engine.IO level, not with a Socket.IO disconnect: browsers
        # treat a closed transport as a network fault and reconnect (to another
        # node behind the balancer), but obey a server "disconnect" and stay away.
        await sio.close_transports()

    app.on_shutdown.append(close_connections)
    app.cleanup_ctx.extend([storage_ctx, cluster_ctx, main_site_ctx, services_ctx])
    return app


async def _migrated(storage: Storage, settings: Settings) -> None:
    """MIGRATE_ON_START's migrations applied; NotMigrated if any is still missing."""
    if settings.migrate_on_start:
        applied = await storage.migrate()
        if applied:
            log.info("migrations applied", versions=applied)
    pending = await storage.pending_migrations()
    if pending:
        raise NotMigrated(
            f"database has unapplied migrations {pending}: run `ecigdis-ws migrate` "
            "or set MIGRATE_ON_START=true"
        )
