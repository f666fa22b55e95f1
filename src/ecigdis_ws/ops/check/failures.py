"""The failures a client runs into, and what usually causes them: each failed step's
reason and the hint printed with it."""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp

from ecigdis_ws.ops.check.options import CheckOptions

# Characters of a server's error text quoted in a line, so a line stays one line.
MAX_QUOTED = 200


class StepFailed(Exception):
    """A step failed: what went wrong (`detail`), and its usual cause (`hint`)."""

    def __init__(self, detail: str, hint: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint


def quote(value: object) -> str:
    """A value as quoted in a line, cut to MAX_QUOTED characters."""
    text = str(value)
    return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "..."


def connection_failure(
    exc: BaseException | None, status: int | None, body: Any, options: CheckOptions
) -> StepFailed:
    """The reason and hint for a request that failed with `exc` or answered `status`."""
    if exc is not None:
        return _exception_failure(exc, options)
    if status is not None:
        return status_failure(status, body, options)
    return StepFailed("no answer", "is this the chat server's address?")


def _exception_failure(exc: BaseException, options: CheckOptions) -> StepFailed:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = getattr(exc.certificate_error, "verify_message", None) or str(
            exc.certificate_error)
        detail = f"TLS certificate rejected: {reason}"
        if "expired" in reason:
            return StepFailed(detail, "the certificate expired: renew it (certbot renew) "
                              "and reload nginx, or restart the server with the new one")
        if "mismatch" in reason or "not valid for" in reason:
            return StepFailed(detail, "the certificate is not issued for this host name: "
                              "connect by the name it names, or reissue it with that name")
        return StepFailed(detail, "the certificate is not signed by a CA this machine trusts: "
                          "serve the full chain (fullchain.pem), or pass --ca-file with the "
                          "CA that signed it")
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return StepFailed(f"TLS handshake failed: {quote(exc)}",
                          "does this port speak TLS? use http:// for a plain port, or set "
                          "USE_HTTPS=true (or put nginx on 443) for https://")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return StepFailed(f"host name not found: {quote(exc)}",
                          "check the host name in the URL (DNS, /etc/hosts)")
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return StepFailed(f"connection refused by {exc.host}:{exc.port}",
                              "is the server running, and on this host and port "
                              "(WS_HOST/WS_PORT, --port; a firewall rejecting it)?")
        return StepFailed(f"cannot connect: {quote(exc)}",
                          "is the host reachable (routes, firewall)?")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        hint = "the server closed the connection without answering"
        if options.url.startswith("http://"):
            hint += ": if it serves TLS (USE_HTTPS=true, or nginx on 443), use https://"
        return StepFailed(f"connection closed: {quote(exc) or type(exc).__name__}", hint)
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return StepFailed(f"no answer within {options.timeout_s:g} s",
                          "a firewall dropping the packets, the wrong host, or an "
                          "overloaded server")
    return StepFailed(f"{type(exc).__name__}: {quote(exc)}")


def status_failure(status: int, body: Any, options: CheckOptions) -> StepFailed:
    error = body.get("error") if isinstance(body, dict) else None  # {"error": {code, message}}
    message = error.get("message") if isinstance(error, dict) else None
    detail = f"HTTP {status}" + (f": {quote(message)}" if message else "")
    # The server's refusal names the origin; over a websocket upgrade no body arrives.
    said_origin = "origin" in str(message) if isinstance(error, dict) else bool(options.origin)
    if status == 403 and said_origin:
        return StepFailed(detail, f"Origin {options.origin!r} not in CORS_ORIGINS: add it to "
                          "the server's CORS_ORIGINS (comma-separated, exact "
                          "scheme://host[:port]) and restart it")
    if status == 403:
        return StepFailed(detail, "refused by something in front of the server "
                          "(proxy or firewall rules)?")
    if status == 404:
        return StepFailed(detail, "nothing serves /socket.io/ at this URL: wrong port or "
                          "path, or the proxy does not pass /socket.io/ to the server")
    if status in (502, 503, 504):
        return StepFailed(detail, "the proxy in front got no answer from a server node: "
                          "are the nodes of its upstream running, on the ports it names?")
    if status == 429:
        return StepFailed(detail, "too many connections from this address are still "
                          "authenticating (MAX_UNAUTHENTICATED_PER_IP); behind a proxy, set "
                          "TRUST_PROXY=true so each client's own address counts")
    if status == 400:
        return StepFailed(detail, "the server refused the Engine.IO request: behind several "
                          "nodes, the proxy needs sticky sessions (ip_hash)")
    return StepFailed(detail)


_AUTH_HINTS = (
    ("bad signature", "token rejected: JWT_SECRET differs between the token issuer and "
                      "the server"),
    ("token expired", "token expired: mint a fresh one; if it is fresh, the issuer's and "
                      "the server's clocks differ (JWT_LEEWAY_S)"),
    ("not yet valid", "the token's nbf is ahead of the server's clock: sync the clocks (NTP)"),
    ("wrong issuer", "the token's iss differs from the server's JWT_ISSUER"),
    ("wrong audience", "the token's aud differs from the server's JWT_AUDIENCE"),
    ("not accepted", "the token's algorithm is not in the server's JWT_ALGORITHMS"),
    ("not a JWT", "the token is not a JWT (three dot-separated parts), and the main site "
                  "(AUTH_VERIFY_URL) did not accept it either"),
    ("no 'exp'", "the token has no exp claim: mint it with an expiry, or set "
                 "JWT_REQUIRE_EXP=false on the server"),
)


def auth_failure(error: Any) -> StepFailed:
    code = error.get("code") if isinstance(error, dict) else None
    message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
    hint = next((h for needle, h in _AUTH_HINTS if needle in message), "")
    return StepFailed(f"{code or 'refused'}: {quote(message)}", hint)


def reply_failure(event: str, reply: Any, options: CheckOptions, user: Any) -> StepFailed:
    error = reply.get("error") if isinstance(reply, dict) else None
    if not isinstance(error, dict):
        return StepFailed(f"unexpected reply to {event}: {quote(reply)}")
    code, message = error.get("code"), quote(error.get("message", ""))
    detail = f"{code}: {message}"
    hints = {
        "FORBIDDEN": f"user {user} is not a member of conversation {options.conversation_id}: "
                     f"`ecigdis-ws conversation add-member {options.conversation_id} {user}`, "
                     "or check with a test conversation it belongs to",
        "UNAVAILABLE": "the server cannot reach its database in DB_TIMEOUT_MS: "
                       "see GET /health and the server's log",
        "RATE_LIMITED": "too many events: wait a second and run the check again",
        "INVALID_PAYLOAD": "the server refused the payload: --conversation must be a "
                           "positive integer",
        "UNAUTHENTICATED": "the session ended: AUTH_TIMEOUT_MS or an expired token",
        "TOKEN_EXPIRED": "the token expired during the check: mint a longer-lived one",
        "INTERNAL": "a server bug: find the trace id in the server's log",
    }
    return StepFailed(detail, hints.get(str(code), ""))

