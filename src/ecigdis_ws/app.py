"""Build the aiohttp application: Socket.IO, HTTP routes, storage and services."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

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
from ecigdis_ws.services.container import ChatServices, RestServices
from ecigdis_ws.services.error_reports import ErrorReports
from ecigdis_ws.services.main_site import MainSiteVerifier
from ecigdis_ws.services.rate_limit import RateLimiter
from ecigdis_ws.settings import Settings
from ecigdis_ws.storage.factory import open_storage
from ecigdis_ws.transport.admission_gate import UpgradeAdmission, admission_refusal
from ecigdis_ws.transport.app_keys import (
    CLUSTER,
    IN_FLIGHT,
    REST_SERVICES,
    SERVICES,
    SETTINGS,
    STARTED_AT,
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


def fanout_manager(settings: Settings, clock: Clock, metrics: Metrics
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
    )


def build_socketio(
    settings: Settings, clock: Clock, metrics: Metrics, manager: ClusterRedisManager | None = None
) -> ChatSocketServer:
    return ChatSocketServer(
        clock=clock,
        protocol_errors=ProtocolErrors(metrics.protocol_errors),
        client_manager=manager or DirectEmitManager(),
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
    clock = clock or SystemClock()
    quiet_malformed_http()
    metrics = Metrics()
    manager = fanout_manager(settings, clock, metrics)
    sio = build_socketio(settings, clock, metrics, manager)
    cluster = ClusterState.open(settings)
    if manager is not None:
        cluster.fanout_healthy = manager.ping
    def errors() -> ErrorReports:
        return app[SERVICES].errors

    stale = stale_session_middleware(lambda: sio.eio.sockets, metrics.stale_session_requests)
    origin_check = origin_refusal(settings, errors)
    admission_check = admission_refusal(lambda: app[SERVICES], settings.trust_proxy)
    # First: a new websocket connection is answered there, after the same two checks,
    # so that no other middleware's coroutine stays suspended for its life.
    entry = websocket_entry_middleware(sio, [origin_check, admission_check])
    app = web.Application(middlewares=[
        *([entry] if entry is not None else []),
        refusal_middleware(origin_check),
        refusal_middleware(admission_check),
        stale,  # before a polling body is read: a request for no session is not read
        polling_limits_middleware(settings.max_payload_bytes, sio.drop_session, sio.refuse,
                                  clock, settings.http_body_timeout_ms / 1000, errors),
        stale,  # and again, for a session that closed while its body was read
    ], handler_args=connection_deadlines(settings))
    app[SETTINGS] = settings
    app[CLUSTER] = cluster
    app[STARTED_AT] = time.monotonic()
    app[SOCKET_SERVER] = sio
    sio.attach(app)
    fanout = SocketIOFanout(sio)
    in_flight = InFlight()  # socket events and REST requests: one drain on SIGTERM
    app[IN_FLIGHT] = in_flight
    sio.session_policy.upgrades = UpgradeAdmission(lambda: app[SERVICES], settings.trust_proxy)
    add_routes(app)
    notifier = DeliveryNotifier()
    sio.manager.notifier = notifier  # told of every delivery here, whichever node sent it
    sio.manager.deliveries = metrics.deliveries  # counted where each is written
    add_rest_routes(app)  # docs/openapi.yaml
    add_client_routes(app, settings)

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        storage = await open_storage(settings, clock)
        stack = contextlib.AsyncExitStack()
        try:
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
            services = ChatServices.build(
                settings, clock, storage, fanout, metrics, cluster.presence, cluster.typing
            )
            services.admission.close_connection = sio.close_unadmitted
            if manager is not None:
                manager.on_recovered = lambda: fanout_recovered(services)
            sio.start_manager()
            await services.presence.start()
            services.typing.start_sweeping()
            services.retention.start()
            metrics.track_connections(
                lambda: services.sessions.count, lambda: services.presence.user_count
            )
            app[SERVICES] = services
            rest = RestServices.build(services, notifier)
            app[REST_SERVICES] = rest
            # Every operation's one pipeline, for the socket and REST alike.
            pipeline = Pipeline(in_flight, metrics.events_received, services.errors)
            SocketEvents(sio, services, rest, pipeline).register()
            app[REST_API] = RestApi(services, rest, pipeline,
                                    RateLimiter(settings.rate_limit_events, clock))
            if settings.auth_verify_url:
                http = await stack.enter_async_context(aiohttp.ClientSession())
                main_site = MainSiteVerifier(
                    settings.auth_verify_url, http, clock,
                    settings.auth_verify_timeout_ms / 1000, settings.auth_verify_cache_s,
                    settings.user_id_type,
                )
                main_site.on_revoked = services.sessions.end_user_sessions
                services.sessions.main_site = main_site
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
        finally:
            await stack.aclose()
            await cluster.close()
            await storage.close()

    async def fanout_recovered(services: ChatServices) -> None:
        # Like Centrifugo's "insufficient state": this node's clients missed what
        # other nodes published while the channel was down. Closing their
        # transports makes them reconnect and rejoin with `since`, which replays
        # the gap from the database; the presence lease is renewed at once.
        log.warning("fan-out channel recovered: asking clients to resync",
                    clients=len(sio.eio.sockets))
        await services.presence.beat_now()
        await sio.close_transports()

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
    app.cleanup_ctx.append(services_ctx)
    return app
