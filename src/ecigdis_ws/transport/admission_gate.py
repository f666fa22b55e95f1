"""The per-address cap, applied to an Engine.IO handshake before engineio sees it.

A handshake is a `/socket.io/` request without a `sid` (polling's first GET, or a
websocket opened directly). Past MAX_UNAUTHENTICATED_PER_IP connections from one
address that have not authenticated yet, it is answered 429 and nothing is
allocated for it; socket.io-client retries with its reconnection backoff.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.admission import AdmissionService
from ecigdis_ws.services.error_reports import ErrorReports
from ecigdis_ws.transport.connect_environ import client_address, request_address
from ecigdis_ws.transport.http_errors import HttpRefusal, Refusal, http_error
from ecigdis_ws.transport.origins import SOCKET_IO_PATH
from ecigdis_ws.transport.socketio_overrides.polling import UpgradeGate

TOO_MANY = "too many connections from this address"


def admission_refusal(
    admission: AdmissionService, errors: ErrorReports, trust_proxy: bool
) -> Refusal:
    """The check, made by a middleware (`refusal_middleware`) and by the websocket
    entry (socketio_overrides/websocket_entry.py), which answers before the middlewares."""

    def refuse_crowded(request: web.Request) -> web.Response | None:
        if request.path.startswith(SOCKET_IO_PATH) and "sid" not in request.query:
            return crowded(admission, errors, request_address(request, trust_proxy))
        return None

    return refuse_crowded


def crowded(
    admission: AdmissionService, errors: ErrorReports, address: str
) -> web.Response | None:
    """429 when `address` has MAX_UNAUTHENTICATED_PER_IP connections on their way in."""
    if admission.has_room(address):
        return None
    return http_error(ChatError(ErrorCode.RATE_LIMITED, TOO_MANY), errors)


class UpgradeAdmission(UpgradeGate):
    """A polling session's websocket upgrade is a connection too: until it is done
    (upgraded, failed, or given up at UPGRADE_TIMEOUT_MS) it counts against its
    address with the unauthenticated connections, and past the cap it is answered
    429 as a handshake is. Without this, five polling handshakes held 2,028 sockets
    waiting to upgrade in 1.1 s (docs/security.md)."""

    def __init__(
        self, admission: AdmissionService, errors: ErrorReports, trust_proxy: bool
    ) -> None:
        self._admission = admission
        self._errors = errors
        self._trust_proxy = trust_proxy

    def admit(self, key: str, environ: Mapping[str, Any]) -> web.Response | None:
        address = client_address(environ, self._trust_proxy)
        refused = crowded(self._admission, self._errors, address)
        if refused is None:
            self._admission.upgrade_started(key, address)
        return refused

    def done(self, key: str) -> None:
        self._admission.upgrade_ended(key)

    def refuse(self, status: int, message: str) -> web.Response:
        refusal = HttpRefusal(ErrorCode.INVALID_PAYLOAD, message, status)
        return http_error(refusal, self._errors)
