"""The check itself: each step in turn, over one Socket.IO client and one HTTP session."""

from __future__ import annotations

import socket
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import socketio

from ecigdis_ws.ops.check.failures import (
    StepFailed,
    auth_failure,
    connection_failure,
    quote,
    reply_failure,
    status_failure,
)
from ecigdis_ws.ops.check.options import CheckOptions
from ecigdis_ws.ops.check.results import StepResult
from ecigdis_ws.ops.socket_client import RecordingClient


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


class Check:
    """The steps of one check, each result reported as it comes."""

    def __init__(self, options: CheckOptions, report: Callable[[StepResult], None]) -> None:
        self.options = options
        self.report = report
        self.results: list[StepResult] = []
        self.trace = _HttpTrace()
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
            result = StepResult(name, False, detail=f"connection lost: {quote(exc)}",
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
            client = RecordingClient(options.url, sio, options.timeout_s)
            try:
                await self._socket_steps(client)
            finally:
                await client.close()
            await self._step("health", lambda: self._health(http))
        return self.results

    async def _socket_steps(self, client: RecordingClient) -> None:
        if not await self._step("connect", lambda: self._connect(client)):
            for name in ("authenticate", "join", "send", "presence"):
                self._not_run(name, "connect failed")
            return
        if not self.options.token:
            self._skip("authenticate", self.options.no_token_reason)
            for name in ("join", "send", "presence"):
                self._skip(name, "needs a token")
            return
        if not await self._step("authenticate", lambda: self._authenticate(client)):
            for name in ("join", "send", "presence"):
                self._not_run(name, "authenticate failed")
            return
        joined = False
        if self.options.conversation_id is None:
            why = "no --conversation ID (a test conversation the user belongs to)"
            self._skip("join", why)
            self._skip("send", why)
        else:
            joined = await self._step("join", lambda: self._join(client))
            if joined:
                await self._step("send", lambda: self._send(client))
            else:
                self._not_run("send", "join failed")
        await self._step("presence", lambda: self._presence(client, joined))

    async def _connect(self, client: RecordingClient) -> str:
        options = self.options
        transports: list[str] = ["polling", "websocket"] if options.transport == "auto" else [
            options.transport]
        headers = {"Origin": options.origin} if options.origin else {}
        try:
            await client.connect(transports=transports, headers=headers)
        except socketio.exceptions.ConnectionError as exc:
            if self.trace.exception is None and self.trace.status in (None, 101, 200):
                # Engine.IO connected; the Socket.IO CONNECT was refused.
                data = client.connect_error
                if isinstance(data, dict) and data.get("code"):
                    raise StepFailed(f"refused: {data['code']}: {quote(data.get('message'))}",
                                     "the server refused the socket (its limits, e.g. "
                                     "MAX_CONNECTIONS_PER_USER)") from None
                raise StepFailed(f"{quote(exc)}", "is this a Socket.IO v5 server "
                                 "(socket.io v3/v4, EIO=4)?") from None
            raise connection_failure(self.trace.exception, self.trace.status,
                                     client.connect_error, options) from None
        greeting = (await client.wait_for("connected"))[0]
        transport = client.sio.transport()
        server_id = greeting.get("serverId") if isinstance(greeting, dict) else None
        if options.transport == "auto" and transport != "websocket":
            raise StepFailed(
                "connected over polling only: the websocket upgrade failed",
                "a proxy in front does not pass the Upgrade/Connection headers "
                "(nginx: proxy_http_version 1.1 and proxy_set_header Upgrade/Connection)")
        return f"{transport}, server {server_id}"

    async def _authenticate(self, client: RecordingClient) -> str:
        reply = await client.call("authenticate", {"token": self.options.token})
        if not isinstance(reply, dict) or not reply.get("ok"):
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise auth_failure(error)
        self.user_id = reply.get("userId")
        return f"user {self.user_id} ({quote(reply.get('name'))})"

    async def _join(self, client: RecordingClient) -> str:
        conversation = self.options.conversation_id
        reply = await client.call("conversation:join", {"conversationId": conversation})
        if not isinstance(reply, dict) or not reply.get("ok"):
            raise reply_failure("conversation:join", reply, self.options, self.user_id)
        return f"conversation {conversation}, online: {reply.get('onlineUserIds')}"

    async def _send(self, client: RecordingClient) -> str:
        message_id = f"check-{uuid.uuid4().hex}"
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        payload = {
            "conversationId": self.options.conversation_id,
            "text": f"ecigdis-ws check from {socket.gethostname()} at {stamp}",
            "messageId": message_id,
        }
        reply = await client.call("message:send", payload)
        if not isinstance(reply, dict) or not reply.get("ok"):
            raise reply_failure("message:send", reply, self.options, self.user_id)
        try:
            ack = (await client.wait_for(
                "message:ack",
                lambda a: isinstance(a, dict) and a.get("messageId") == message_id,
            ))[0]
        except TimeoutError:
            raise StepFailed("the ack came back, but no message:ack event",
                             "old clients wait for message:ack: a server bug?") from None
        if ack.get("status") != "sent":
            raise StepFailed(f"message:ack {ack.get('status')}: {quote(ack.get('error'))}")
        return f"message {ack.get('id')} stored and acknowledged"

    async def _presence(self, client: RecordingClient, joined: bool) -> str:
        conversation = self.options.conversation_id if joined else None
        data = None if conversation is None else {"conversationId": conversation}
        reply = await client.call("presence:request", data)
        if not isinstance(reply, dict) or not reply.get("ok"):
            raise reply_failure("presence:request", reply, self.options, self.user_id)
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
                raise status_failure(status, None, self.options)
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
