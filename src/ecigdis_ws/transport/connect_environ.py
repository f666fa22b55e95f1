"""What the Socket.IO connect handler reads from the handshake request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

# The headers `handshake_token` and `client_address` read, by their WSGI environ key.
CONNECT_HEADERS = {
    "HTTP_AUTHORIZATION": "Authorization",
    "HTTP_X_FORWARDED_FOR": "X-Forwarded-For",
    "HTTP_X_REAL_IP": "X-Real-IP",
}
# Every WSGI environ key they read.
CONNECT_ENVIRON_KEYS = ("aiohttp.request", *CONNECT_HEADERS)


def connect_environ(request: web.Request) -> dict[str, Any]:
    """The part of engineio's WSGI environ for `request` that the connect handler
    reads, built as engineio's aiohttp driver builds it (a header sent several
    times is its values joined by ","), for a connection engineio never sees."""
    environ: dict[str, Any] = {"aiohttp.request": request}
    for key, header in CONNECT_HEADERS.items():
        values = request.headers.getall(header, ())
        if values:
            environ[key] = ",".join(values)
    return environ


def handshake_token(environ: Mapping[str, Any], auth: Any) -> str | None:
    """`auth.token` from io(url, { auth }), else an `Authorization: Bearer` header."""
    if isinstance(auth, dict) and auth.get("token") is not None:
        token = auth["token"]
        return token if isinstance(token, str) else ""
    header = environ.get("HTTP_AUTHORIZATION", "")
    return bearer_token(header) if isinstance(header, str) else None


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (the scheme in any
    case, as RFC 9110 says), or None for another scheme."""
    return header[7:].strip() if header[:7].lower() == "bearer " else None


def client_address(environ: Mapping[str, Any], trust_proxy: bool) -> str:
    """The peer's address; behind our own proxy (TRUST_PROXY), the address it saw.

    nginx appends the address it saw to X-Forwarded-For, so the last entry is the
    one a client cannot forge; X-Real-IP is used when nginx sets that instead.
    """
    request = environ.get("aiohttp.request")
    peer = str(getattr(request, "remote", "") or "")
    if not trust_proxy:
        return peer
    forwarded = str(environ.get("HTTP_X_FORWARDED_FOR", ""))
    if forwarded:
        return forwarded.split(",")[-1].strip()
    return str(environ.get("HTTP_X_REAL_IP", "")) or peer


def request_address(request: web.Request, trust_proxy: bool) -> str:
    """`client_address` for a request engineio has not seen yet (a handshake)."""
    return client_address(connect_environ(request), trust_proxy)
