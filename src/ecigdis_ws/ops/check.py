"""`ecigdis-ws check URL`: the connection tester (the old test-connection.js).

It goes through what a browser client does, one step at a time, and prints one
line per step: ✓ or ✗, the time the step took, and on failure what went wrong
with a hint at the usual cause.

    connect        Engine.IO + Socket.IO handshake (polling, then the websocket
                   upgrade, as socket.io-client does), and the `connected` greeting
    authenticate   `authenticate { token }` after connecting, so a refused token is
                   told apart from a refused connection
    join           `conversation:join` of --conversation
    send           `message:send` to it, waiting for the ack and `message:ack`
    presence       `presence:request`, which must list the check's own user
    health         GET /health

A step ends one of four ways: passed (✓), failed (✗), skipped (-) because the
operator did not ask for it (no --conversation: join and send; no token: every
step after connect but health), or not run (-) because an earlier step it needs
failed. The exit status is 0 when no step failed, skipped steps named in the last
line; 1 when one failed. The check never picks a conversation of its own, even
where CONVERSATION_ACCESS=open would let it: its message would land in a
conversation people read, so it writes only where --conversation tells it to.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
import socketio

from ecigdis_ws.clock import SystemClock
from ecigdis_ws.services.auth import mint_token, parse_user_id
from ecigdis_ws.settings import SettingsError, load_settings

# A healthy server answers each step in milliseconds; 10 s leaves room for a slow
# network and for the server's own DB_TIMEOUT_MS (3 s) before it answers UNAVAILABLE.
DEFAULT_STEP_TIMEOUT_S = 10.0
# A step that needs longer than 10 minutes is a failure whatever the setting.
MAX_STEP_TIMEOUT_S = 600.0
# A token minted for --user is used only by this check: it need not outlive it.
MINTED_TOKEN_TTL_S = 300
# Characters of a server's error text quoted in a line, so a line stays one line.
MAX_QUOTED = 200

Transport = Literal["auto", "polling", "websocket"]
STEPS = ("connect", "authenticate", "join", "send", "presence", "health")


@dataclass(frozen=True)
class CheckOptions:
    url: str
    token: str | None = None
    conversation_id: int | None = None
    origin: str | None = None
    transport: Transport = "auto"
    ca_file: str | None = None
    timeout_s: float = DEFAULT_STEP_TIMEOUT_S
    # Why there is no token, told in the authenticate line when there is none.
    no_token_reason: str = "no token: pass --token T, or --user ID to mint one"


@dataclass
class StepResult:
    name: str
    passed: bool | None  # None: skipped or not run
    elapsed_ms: float = 0.0
    detail: str = ""
    hint: str = ""
    skipped: bool = False  # not asked for (no --conversation, no token): not a failure

    def line(self) -> str:
        if self.passed is None:
            outcome = "skipped" if self.skipped else "not run"
            return f"- {self.name:<12} {'':>7}     {outcome}: {self.detail}"
        mark = "✓" if self.passed else "✗"
        text = f"{mark} {self.name:<12} {self.elapsed_ms:>7.0f} ms  {self.detail}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class StepFailed(Exception):
    def __init__(self, detail: str, hint: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint


# -- the failures a client runs into, and what usually causes them -----------------------


def _quote(value: object) -> str:
    text = str(value)
    return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "..."


def connection_failure(
    exc: BaseException | None, status: int | None, body: Any, options: CheckOptions
) -> StepFailed:
    """The reason and hint for a request that failed with `exc` or answered `status`."""
    if exc is not None:
        return _exception_failure(exc, options)
    if status is not None:
        return _status_failure(status, body, options)
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
        return StepFailed(f"TLS handshake failed: {_quote(exc)}",
                          "does this port speak TLS? use http:// for a plain port, or set "
                          "USE_HTTPS=true (or put nginx on 443) for https://")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return StepFailed(f"host name not found: {_quote(exc)}",
                          "check the host name in the URL (DNS, /etc/hosts)")
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return StepFailed(f"connection refused by {exc.host}:{exc.port}",
                              "is the server running, and on this host and port "
                              "(WS_HOST/WS_PORT, --port; a firewall rejecting it)?")
        return StepFailed(f"cannot connect: {_quote(exc)}",
                          "is the host reachable (routes, firewall)?")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        hint = "the server closed the connection without answering"
        if options.url.startswith("http://"):
            hint += ": if it serves TLS (USE_HTTPS=true, or nginx on 443), use https://"
        return StepFailed(f"connection closed: {_quote(exc) or type(exc).__name__}", hint)
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return StepFailed(f"no answer within {options.timeout_s:g} s",
                          "a firewall dropping the packets, the wrong host, or an "
                          "overloaded server")
    return StepFailed(f"{type(exc).__name__}: {_quote(exc)}")


def _status_failure(status: int, body: Any, options: CheckOptions) -> StepFailed:
    error = body.get("error") if isinstance(body, dict) else None  # {"error": {code, message}}
    message = error.get("message") if isinstance(error, dict) else None
    detail = f"HTTP {status}" + (f": {_quote(message)}" if message else "")
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
    return StepFailed(f"{code or 'refused'}: {_quote(message)}", hint)


def _reply_failure(event: str, reply: Any, options: CheckOptions, user: Any) -> StepFailed:
    error = reply.get("error") if isinstance(reply, dict) else None
    if not isinstance(error, dict):
        return StepFailed(f"unexpected reply to {event}: {_quote(reply)}")
    code, message = error.get("code"), _quote(error.get("message", ""))
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


# -- recording what the server sends and what HTTP did ------------------------------------


class _Inbox:
    """Every event the server sent, so a step can wait for one."""

    def __init__(self) -> None:
        self.events: dict[str, list[Any]] = defaultdict(list)
        self._changed = asyncio.Condition()

    async def record(self, event: str, *args: Any) -> None:
        self.events[event].append(args[0] if len(args) == 1 else list(args))
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, event: str, where: Callable[[Any], bool], timeout_s: float) -> Any:
        def found() -> list[Any]:
            return [item for item in self.events[event] if where(item)]

        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: bool(found()))
        return found()[0]


@dataclass
class _HttpTrace:
    """The last HTTP exception and status the Socket.IO client's session saw:
    python-engineio reduces both to a message, the hints need the real thing."""

    exception: BaseException | None = None
    status: int | None = None
    config: aiohttp.TraceConfig = field(default_factory=aiohttp.TraceConfig)

    def __post_init__(self) -> None:
        self.config.on_request_exception.append(self._on_exception)
        self.config.on_request_end.append(self._on_end)

    async def _on_exception(self, session: Any, context: Any,
                            params: aiohttp.TraceRequestExceptionParams) -> None:
        self.exception = params.exception

    async def _on_end(self, session: Any, context: Any,
                      params: aiohttp.TraceRequestEndParams) -> None:
        self.status = params.response.status


# -- the check ----------------------------------------------------------------------------


class Check:
    def __init__(self, options: CheckOptions, report: Callable[[StepResult], None]) -> None:
        self.options = options
        self.report = report
        self.results: list[StepResult] = []
        self.inbox = _Inbox()
        self.trace = _HttpTrace()
        self.connect_error: Any = None
        self.user_id: Any = None

    def _record(self, result: StepResult) -> None:
        self.results.append(result)
        self.report(result)

    def _not_run(self, name: str, why: str) -> None:
        self._record(StepResult(name, None, detail=why))

    def _skip(self, name: str, why: str) -> None:
        self._record(StepResult(name, None, detail=why, skipped=True))

    async def _step(self, name: str, work: Callable[[], Awaitable[str]]) -> bool:
        started = time.perf_counter()
        try:
            detail = await work()
            result = StepResult(name, True, detail=detail)
        except StepFailed as failure:
            result = StepResult(name, False, detail=failure.detail, hint=failure.hint)
        except socketio.exceptions.TimeoutError:
            result = StepResult(name, False, detail=f"no reply within "
                                f"{self.options.timeout_s:g} s",
                                hint="the server is overloaded or stuck: see its log")
        except TimeoutError:
            result = StepResult(name, False, detail=f"nothing within "
                                f"{self.options.timeout_s:g} s",
                                hint="the server is overloaded or stuck: see its log")
        except socketio.exceptions.SocketIOError as exc:
            result = StepResult(name, False, detail=f"connection lost: {_quote(exc)}",
                                hint="the server closed the connection: see its log")
        result.elapsed_ms = (time.perf_counter() - started) * 1000
        self._record(result)
        return bool(result.passed)

    def _ssl_context(self) -> ssl.SSLContext | bool:
        if self.options.ca_file:
            return ssl.create_default_context(cafile=self.options.ca_file)
        return True

    async def run(self) -> list[StepResult]:
        options = self.options
        connector = aiohttp.TCPConnector(ssl=self._ssl_context())
        async with aiohttp.ClientSession(connector=connector,
                                         trace_configs=[self.trace.config]) as http:
            sio = socketio.AsyncClient(
                reconnection=False, handle_sigint=False, http_session=http,
                request_timeout=options.timeout_s,
            )
            sio.on("*", self.inbox.record)
            sio.on("connect_error", self._on_connect_error)
            try:
                await self._socket_steps(sio)
            finally:
                if sio.connected:
                    await sio.disconnect()
            await self._step("health", lambda: self._health(http))
        return self.results

    async def _on_connect_error(self, data: Any = None) -> None:
        self.connect_error = data

    async def _socket_steps(self, sio: socketio.AsyncClient) -> None:
        if not await self._step("connect", lambda: self._connect(sio)):
            for name in ("authenticate", "join", "send", "presence"):
                self._not_run(name, "connect failed")
            return
        if not self.options.token:
            self._skip("authenticate", self.options.no_token_reason)
            for name in ("join", "send", "presence"):
                self._skip(name, "needs a token")
            return
        if not await self._step("authenticate", lambda: self._authenticate(sio)):
            for name in ("join", "send", "presence"):
                self._not_run(name, "authenticate failed")
            return
        joined = False
        if self.options.conversation_id is None:
            why = "no --conversation ID (a test conversation the user belongs to)"
            self._skip("join", why)
            self._skip("send", why)
        else:
            joined = await self._step("join", lambda: self._join(sio))
            if joined:
                await self._step("send", lambda: self._send(sio))
            else:
                self._not_run("send", "join failed")
        await self._step("presence", lambda: self._presence(sio, joined))

    async def _connect(self, sio: socketio.AsyncClient) -> str:
        options = self.options
        transports = ["polling", "websocket"] if options.transport == "auto" else [
            options.transport]
        headers = {"Origin": options.origin} if options.origin else {}
        try:
            await sio.connect(options.url, headers=headers, transports=transports,
                              wait_timeout=options.timeout_s)
        except socketio.exceptions.ConnectionError as exc:
            if self.trace.exception is None and self.trace.status in (None, 101, 200):
                # Engine.IO connected; the Socket.IO CONNECT was refused.
                data = self.connect_error
                if isinstance(data, dict) and data.get("code"):
                    raise StepFailed(f"refused: {data['code']}: {_quote(data.get('message'))}",
                                     "the server refused the socket (its limits, e.g. "
                                     "MAX_CONNECTIONS_PER_USER)") from None
                raise StepFailed(f"{_quote(exc)}", "is this a Socket.IO v5 server "
                                 "(socket.io v3/v4, EIO=4)?") from None
            raise connection_failure(self.trace.exception, self.trace.status,
                                     self.connect_error, options) from None
        greeting = await self.inbox.wait_for("connected", lambda _: True, options.timeout_s)
        transport = sio.transport()
        server_id = greeting.get("serverId") if isinstance(greeting, dict) else None
        if options.transport == "auto" and transport != "websocket":
            raise StepFailed(
                "connected over polling only: the websocket upgrade failed",
                "a proxy in front does not pass the Upgrade/Connection headers "
                "(nginx: proxy_http_version 1.1 and proxy_set_header Upgrade/Connection)")
        return f"{transport}, server {server_id}"

    async def _authenticate(self, sio: socketio.AsyncClient) -> str:
        reply = await sio.call("authenticate", {"token": self.options.token},
                               timeout=self.options.timeout_s)
        if not isinstance(reply, dict) or not reply.get("ok"):
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise auth_failure(error)
        self.user_id = reply.get("userId")
        return f"user {self.user_id} ({_quote(reply.get('name'))})"

    async def _join(self, sio: socketio.AsyncClient) -> str:
        conversation = self.options.conversation_id
        reply = await sio.call("conversation:join", {"conversationId": conversation},
                               timeout=self.options.timeout_s)
        if not isinstance(reply, dict) or not reply.get("ok"):
            raise _reply_failure("conversation:join", reply, self.options, self.user_id)
        return f"conversation {conversation}, online: {reply.get('onlineUserIds')}"

    async def _send(self, sio: socketio.AsyncClient) -> str:
        message_id = f"check-{uuid.uuid4().hex}"
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        payload = {
            "conversationId": self.options.conversation_id,
            "text": f"ecigdis-ws check from {socket.gethostname()} at {stamp}",
            "messageId": message_id,
        }
        reply = await sio.call("message:send", payload, timeout=self.options.timeout_s)
        if not isinstance(reply, dict) or not reply.get("ok"):
            raise _reply_failure("message:send", reply, self.options, self.user_id)
        try:
            ack = await self.inbox.wait_for(
                "message:ack",
                lambda a: isinstance(a, dict) and a.get("messageId") == message_id,
                self.options.timeout_s,
            )
        except TimeoutError:
            raise StepFailed("the ack came back, but no message:ack event",
                             "old clients wait for message:ack: a server bug?") from None
        if ack.get("status") != "sent":
            raise StepFailed(f"message:ack {ack.get('status')}: {_quote(ack.get('error'))}")
        return f"message {ack.get('id')} stored and acknowledged"

    async def _presence(self, sio: socketio.AsyncClient, joined: bool) -> str:
        conversation = self.options.conversation_id if joined else None
        if conversation is None:
            reply = await sio.call("presence:request", timeout=self.options.timeout_s)
        else:
            reply = await sio.call("presence:request", {"conversationId": conversation},
                                   timeout=self.options.timeout_s)
        if not isinstance(reply, dict) or not reply.get("ok"):
            raise _reply_failure("presence:request", reply, self.options, self.user_id)
        users = reply.get("users") or []
        if not any(isinstance(u, dict) and u.get("userId") == self.user_id for u in users):
            raise StepFailed(f"user {self.user_id} is missing from the {len(users)} online",
                             "presence is broken: with several nodes, check Redis "
                             "(REDIS_URL) and GET /health on each")
        scope = f"conversation {conversation}" if conversation is not None else "everywhere"
        return f"{reply.get('count')} online ({scope})"

    async def _health(self, http: aiohttp.ClientSession) -> str:
        url = self.options.url.rstrip("/") + "/health"
        timeout = aiohttp.ClientTimeout(total=self.options.timeout_s)
        try:
            async with http.get(url, timeout=timeout) as response:
                status = response.status
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise connection_failure(exc, None, None, self.options) from None
        if not isinstance(body, dict) or "database" not in body:
            if status in (502, 503, 504):
                raise _status_failure(status, None, self.options)
            raise StepFailed(f"HTTP {status}, not the chat server's /health",
                             "is this the chat server's address (and its /health)?")
        summary = f"database {body.get('database')}, redis {body.get('redis')}"
        if status == 200:
            return f"{body.get('status')}: {summary}"
        hints = []
        if body.get("database") != "connected":
            hints.append("the server cannot reach its database (DATABASE_URL; is MariaDB "
                         "running?)")
        if body.get("redis") == "disconnected":
            hints.append("the server cannot reach Redis (REDIS_URL; is redis-server running?)")
        raise StepFailed(f"HTTP {status} {body.get('status')}: {summary}", "; ".join(hints))


async def run_check(
    options: CheckOptions, report: Callable[[StepResult], None] = lambda _: None
) -> list[StepResult]:
    """Run every step; `report` is called with each result as it comes."""
    return await Check(options, report).run()


def passed(results: list[StepResult]) -> bool:
    """No step failed or was kept from running by a failure; skipped ones are fine."""
    return len(results) == len(STEPS) and all(r.passed or r.skipped for r in results)


# -- the command --------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= MAX_STEP_TIMEOUT_S:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and {MAX_STEP_TIMEOUT_S:g}")
    return value


def register(commands: Any) -> None:
    """Add the `check` subcommand to the CLI's subparsers."""
    parser = commands.add_parser(
        "check", help="connect to a server like a client does and report each step",
        description="Connect, authenticate, join, send, ask for presence and read /health, "
                    "one line per step. Exit status 0 only when every step passed.",
    )
    parser.add_argument("url", help="the server's URL, e.g. https://chat.example.com or "
                                    "http://127.0.0.1:8080")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--token", help="a token as the portal issues it")
    who.add_argument("--user", help="mint a token for this user id with the local "
                                    "settings' JWT_SECRET (.env / environment)")
    parser.add_argument("--conversation", type=_positive_int, metavar="ID",
                        help="a conversation the user belongs to; the check sends one "
                             "message to it")
    parser.add_argument("--origin", help="the Origin header to send, as a browser on that "
                                         "site would (checks CORS_ORIGINS)")
    parser.add_argument("--transport", choices=("auto", "polling", "websocket"),
                        default="auto", help="auto: polling, then upgrade to websocket, "
                                             "as browsers do (default)")
    parser.add_argument("--ca-file", metavar="PEM",
                        help="trust the CA certificates in this file for https/wss")
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_STEP_TIMEOUT_S,
                        metavar="S", help=f"per step (default {DEFAULT_STEP_TIMEOUT_S:g} s)")


def run(args: argparse.Namespace) -> int:
    url: str = args.url
    if not url.startswith(("http://", "https://")):
        print(f"ecigdis-ws: {url!r}: expected an http:// or https:// URL", file=sys.stderr)
        return 2
    if args.ca_file is not None and not os.path.isfile(args.ca_file):
        print(f"ecigdis-ws: --ca-file {args.ca_file}: no such file", file=sys.stderr)
        return 2
    token: str | None = args.token
    if args.user is not None:
        try:
            settings = load_settings()
        except SettingsError as exc:
            print(f"ecigdis-ws: --user needs the local settings: {exc}", file=sys.stderr)
            return 2
        user_id = parse_user_id(args.user, settings.user_id_type)
        if user_id is None:
            print(f"ecigdis-ws: {args.user!r} is not a valid user id "
                  f"(USER_ID_TYPE={settings.user_id_type})", file=sys.stderr)
            return 2
        try:
            token = mint_token(settings, SystemClock(), user_id, f"ecigdis-ws check {user_id}",
                               MINTED_TOKEN_TTL_S)
        except ValueError as exc:
            print(f"ecigdis-ws: cannot mint a token: {exc}", file=sys.stderr)
            return 2
    options = CheckOptions(
        url=url, token=token, conversation_id=args.conversation, origin=args.origin,
        transport=args.transport, ca_file=args.ca_file, timeout_s=args.timeout,
    )
    print(f"ecigdis-ws check {url}", flush=True)
    try:
        results = asyncio.run(run_check(options, lambda r: print(r.line(), flush=True)))
    except KeyboardInterrupt:
        print("check interrupted", file=sys.stderr)
        return 130
    if passed(results):
        print(summary(results))
        return 0
    print(f"check failed: {summary(results)}")
    return 1


def summary(results: list[StepResult]) -> str:
    """`all 6 steps passed`, or the counts with the skipped steps named."""
    ok = sum(1 for r in results if r.passed)
    if ok == len(results):
        return f"all {ok} steps passed"
    failed = sum(1 for r in results if r.passed is False)
    not_run = sum(1 for r in results if r.passed is None and not r.skipped)
    skipped = [r.name for r in results if r.skipped]
    parts = [f"{ok} of {len(results)} steps passed"]
    parts += [f"{failed} failed"] if failed else []
    parts += [f"{not_run} not run"] if not_run else []
    parts += [f"{len(skipped)} skipped ({', '.join(skipped)})"] if skipped else []
    return ", ".join(parts)
