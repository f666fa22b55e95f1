"""Soak: under a minute of mixed load, then quiet; the server is back where it started.

`test_soak_server_process_returns_to_its_baseline` runs `ecigdis-ws serve` as a
real process on loopback (SQLite, short presence grace and typing timeout, rate
limits off) and drives it with python-socketio clients: websocket, polling and
polling-then-upgrade; a token in the handshake or an `authenticate` event; joins
with and without `since`; sends, duplicate resends, typing, reactions, receipts,
presence, leaves; then a graceful disconnect, or an abrupt one (the TCP
connection aborted, or a polling client that just stops), and a reconnect.

A warm-up round comes first, so the allocator's growth on first use is not
counted; the baseline is taken after it, in quiet. After the main round and the
same quiet, the process must be back: RSS within RSS_GROWTH_LIMIT_KB, open file
descriptors and threads within a small margin, `/status` and `/metrics` showing
no client and no user, every acknowledged message stored exactly once, the
server's error counters equal to the refusals the clients provoked on purpose,
no error in its log, and a clean exit on SIGTERM.

The process cannot be asked for its asyncio tasks, so
`test_soak_in_process_state_drains` repeats a short mix against the in-process
server (ManualClock) and counts them, with the services' own state.

Every loop is bounded in time and count; the server process is killed in teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from ecigdis_ws.clock import SystemClock
from ecigdis_ws.services.auth import mint_token
from ecigdis_ws.settings import load_settings
from ecigdis_ws.storage.factory import open_storage
from tests.support import WAIT_S, ChatClient, RunningServer, free_port

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]

SCRIPT = Path(sys.executable).parent / "ecigdis-ws"
SECRET = "soak-test-secret-that-is-long-enough-for-production"

CLIENTS = 40
USERS = tuple(range(100, 130))  # 30 users for 40 clients: some have two tabs
LISTENER = 999  # a member of every conversation, connected through the main round
OUTSIDER_ONLY = 998  # the only member of a conversation the others may not enter
# 10 s of load is about 375 sessions (95 cut abruptly) and 1,850 messages here
# (measured at 20 s: 750, 190 and 3,700): still four times what the checks below
# need (20 abrupt, 500 messages), in a suite that must stay under 10 minutes.
WARMUP_S = 5.0
LOAD_S = 10.0
SETTLE_TIMEOUT_S = 30.0  # for clients and users to drain after the load
QUIET_S = 2.0  # then a little more quiet before measuring
SERVER_UP_TIMEOUT_S = 15.0
SERVER_STOP_TIMEOUT_S = 15.0

RSS_GROWTH_LIMIT_KB = 15 * 1024
FD_MARGIN = 4
THREAD_MARGIN = 2
# Refusals the clients provoke on purpose; any other code is a failure.
PROVOKED = frozenset({"FORBIDDEN", "NOT_FOUND"})
TRANSPORTS: tuple[list[str], ...] = (
    ["websocket"], ["websocket"], ["websocket"], ["polling"], ["polling", "websocket"],
)
TEXTS = (
    "hello", "ça va? 👍", "'; DROP TABLE chat_messages; --", "<b>bold</b>", "\u202eevil",
    "line\nbreak", "x" * 500, "中文 עברית", "a\x00b",
)
EMOJI = ("👍", "❤️", "😂", "🎉")


# -- the world: users, conversations, tokens ------------------------------------------


@dataclasses.dataclass(frozen=True)
class World:
    url: str
    tokens: dict[int, str]
    conversations_of: dict[int, list[int]]  # user -> their conversations
    everything: list[int]  # every conversation the users share
    closed: int  # a conversation none of USERS belongs to


def members_of(index: int) -> list[int]:
    """Six overlapping conversations of ten users each."""
    return [USERS[(index * 5 + offset) % len(USERS)] for offset in range(10)]


async def build_world(env: dict[str, str], url: str) -> World:
    """Migrate and create the conversations before the server starts, as ops would."""
    settings = load_settings(env, dotenv_path=None)
    storage = await open_storage(settings)
    try:
        await storage.migrate()
        now_ms = int(time.time() * 1000)
        conversations: dict[int, list[int]] = {}
        for index in range(6):
            members = members_of(index)
            conversation = await storage.conversations.create_conversation(
                f"soak {index}", [*members, LISTENER], now_ms
            )
            conversations[conversation] = members
        closed = await storage.conversations.create_conversation("closed", [OUTSIDER_ONLY], now_ms)
    finally:
        await storage.close()
    clock = SystemClock()
    tokens = {
        user: mint_token(settings, clock, user, f"soak{user}", 3600)
        for user in (*USERS, LISTENER)
    }
    conversations_of = {
        user: [c for c, members in conversations.items() if user in members] for user in USERS
    }
    return World(url, tokens, conversations_of, list(conversations), closed)


# -- what the clients saw -----------------------------------------------------------------


@dataclasses.dataclass
class Tally:
    # (user, client messageId) -> (server id, conversation, text), for every ack `sent`
    acked: dict[tuple[int, str], tuple[int, int, str]] = dataclasses.field(default_factory=dict)
    by_conversation: dict[int, list[int]] = dataclasses.field(default_factory=dict)
    refusals: Counter[str] = dataclasses.field(default_factory=Counter)  # by code
    unexpected: list[str] = dataclasses.field(default_factory=list)
    actions: Counter[str] = dataclasses.field(default_factory=Counter)
    sessions: Counter[str] = dataclasses.field(default_factory=Counter)

    def fail(self, what: str) -> None:
        if len(self.unexpected) < 50:
            self.unexpected.append(what)


async def call(client: ChatClient, tally: Tally, event: str, data: Any,
               expect: str | None = None) -> dict[str, Any] | None:
    """An acknowledged event; a refusal other than `expect` is recorded as unexpected."""
    tally.actions[event] += 1
    try:
        reply: dict[str, Any] = await client.call(event, data)
    except TimeoutError:
        tally.fail(f"{event}: no ack within {WAIT_S} s")
        return None
    if reply.get("ok"):
        if expect is not None:
            tally.fail(f"{event} {data!r}: expected {expect}, got {reply!r}")
        return reply
    code = str(reply.get("error", {}).get("code"))
    tally.refusals[code] += 1
    if code != expect:
        tally.fail(f"{event} {data!r}: {reply!r}")
    return None


async def abort(client: ChatClient) -> None:
    """Go away without a goodbye: the TCP connection reset, or polling just stopped."""
    eio = client.sio.eio
    connection = getattr(eio.ws, "_conn", None) if eio.current_transport == "websocket" else None
    if connection is not None and connection.transport is not None:
        connection.transport.abort()
    elif eio.http is not None:
        await eio.http.close()  # the server times the polling session out
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(client.disconnected.wait(), WAIT_S)


# -- one client's life: connect, chat, leave, again until the deadline --------------------


@dataclasses.dataclass
class Persona:
    index: int
    world: World
    tally: Tally
    rng: random.Random
    user: int
    round: int
    sent: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # (cid, id)
    counter: int = 0

    async def live(self, deadline: float) -> None:
        sessions = 0
        while time.monotonic() < deadline and sessions < 1000:
            sessions += 1
            client = ChatClient(self.world.url)
            reasons: list[str] = []

            async def disconnected(*args: Any, client: ChatClient = client,
                                   reasons: list[str] = reasons) -> None:
                reasons.append(str(args[0]) if args else "unknown")
                client.disconnected.set()

            client.sio.on("disconnect", disconnected)
            try:
                await self.session(client, deadline)
            except (TimeoutError, socketio.exceptions.SocketIOError) as exc:
                self.tally.fail(
                    f"user {self.user} over {TRANSPORTS[self.index % len(TRANSPORTS)]}: "
                    f"{type(exc).__name__} {exc}; disconnected: {reasons}"
                )
            finally:
                await client.close()

    async def session(self, client: ChatClient, deadline: float) -> None:
        rng, tally, token = self.rng, self.tally, self.world.tokens[self.user]
        transports = TRANSPORTS[self.index % len(TRANSPORTS)]
        tally.sessions["+".join(transports)] += 1
        if rng.random() < 0.6:
            await client.connect(token=token, transports=transports)
            await client.wait_for("authenticated")
        else:
            await client.connect(transports=transports)
            await client.wait_for("connected")
            if await call(client, tally, "authenticate", {"token": token}) is None:
                return
        mine = self.world.conversations_of[self.user]
        joined = rng.sample(mine, k=rng.randint(1, len(mine)))
        for conversation in joined:
            join: dict[str, Any] = {"conversationId": conversation}
            if rng.random() < 0.3:
                known = tally.by_conversation.get(conversation, [])
                join["since"] = known[-min(len(known), 5)] if known else 0
            await call(client, tally, "conversation:join", join)
        for _ in range(rng.randint(5, 30)):
            if time.monotonic() >= deadline:
                break
            await self.act(client, rng.choice(joined))
            await asyncio.sleep(rng.uniform(0.01, 0.15))
        ending = rng.random()
        if ending < 0.35:
            tally.sessions["abrupt"] += 1
            await abort(client)
        elif ending < 0.5:
            for conversation in joined:
                await call(client, tally, "conversation:leave", {"conversationId": conversation})

    async def act(self, client: ChatClient, conversation: int) -> None:
        rng, tally = self.rng, self.tally
        action = rng.choices(
            ["send", "resend", "typing", "stop", "react", "read", "presence", "rejoin",
             "forbidden", "missing"],
            weights=[35, 4, 15, 6, 8, 8, 5, 4, 2, 2],
        )[0]
        known = tally.by_conversation.get(conversation, [])
        at = {"conversationId": conversation}
        if action == "send" or (action == "resend" and not self.sent):
            self.counter += 1
            client_id = f"{self.user}-{self.round}-{self.index}-{self.counter}"
            text = f"{rng.choice(TEXTS)} #{self.counter}"
            ack = await call(client, tally, "message:send",
                             {**at, "text": text, "messageId": client_id})
            if ack is not None:
                if ack.get("duplicate") or (self.user, client_id) in tally.acked:
                    tally.fail(f"a new message was taken for a duplicate: {ack!r}")
                tally.acked[self.user, client_id] = (ack["id"], conversation, text)
                tally.by_conversation.setdefault(conversation, []).append(ack["id"])
                self.sent.append((client_id, ack["id"]))
        elif action == "resend":
            client_id, message_id = rng.choice(self.sent)
            ack = await call(client, tally, "message:send",
                             {**at, "text": "again", "messageId": client_id})
            if ack is not None and not (ack.get("duplicate") and ack["id"] == message_id):
                tally.fail(f"a resend was not recognised: {ack!r}")
        elif action == "typing":
            await call(client, tally, "typing:start", at)
        elif action == "stop":
            await call(client, tally, "typing:stop", at)
        elif action in ("react", "read") and known:
            message_id = rng.choice(known[-20:])
            if action == "react":
                await call(client, tally, "message:react",
                           {**at, "messageId": message_id, "emoji": rng.choice(EMOJI)})
            else:
                await call(client, tally, "message:read", {**at, "messageId": message_id})
        elif action == "presence":
            await call(client, tally, "presence:request", at if rng.random() < 0.5 else None)
        elif action == "rejoin":
            await call(client, tally, "conversation:leave", at)
            await call(client, tally, "conversation:join", at)
        elif action == "forbidden":
            await call(client, tally, "conversation:join",
                       {"conversationId": self.world.closed}, expect="FORBIDDEN")
        elif action == "missing":
            await call(client, tally, "message:react",
                       {**at, "messageId": 10**12, "emoji": "👍"}, expect="NOT_FOUND")


async def load(world: World, tally: Tally, seconds: float, seed: int) -> None:
    deadline = time.monotonic() + seconds
    personas = [
        Persona(i, world, tally, random.Random(seed * 1000 + i), USERS[i % len(USERS)], seed)
        for i in range(CLIENTS)
    ]
    # Each call is bounded by WAIT_S, so the last session ends soon after the deadline.
    async with asyncio.timeout(seconds + 60):
        await asyncio.gather(*(persona.live(deadline) for persona in personas))


# -- the server process and what /proc and its endpoints say -------------------------------


@dataclasses.dataclass(frozen=True)
class Snapshot:
    rss_kb: int
    fds: int
    threads: int
    status: dict[str, Any]
    metrics: dict[str, Any]

    def counter(self, name: str, labels: str | None = None) -> float:
        value = self.metrics.get(name, {} if labels else 0.0)
        return float(value.get(labels, 0.0) if labels else value)

    def errors(self) -> Counter[str]:
        by_label = self.metrics.get("ecigdis_ws_errors_total", {})
        return Counter({key.removeprefix("code="): int(n) for key, n in by_label.items()})


@dataclasses.dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    url: str
    db_path: Path
    log_path: Path

    def proc_status(self) -> dict[str, str]:
        lines = Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line)

    async def get_json(self, http: aiohttp.ClientSession, path: str) -> dict[str, Any]:
        async with http.get(self.url + path) as response:
            assert response.status == 200, path
            body: dict[str, Any] = await response.json()
            return body

    async def snapshot(self, http: aiohttp.ClientSession) -> Snapshot:
        status = self.proc_status()
        return Snapshot(
            rss_kb=int(status["VmRSS"].split()[0]),
            fds=len(os.listdir(f"/proc/{self.process.pid}/fd")),
            threads=int(status["Threads"]),
            status=await self.get_json(http, "/status"),
            metrics=await self.get_json(http, "/metrics?format=json"),
        )

    async def settle(self, http: aiohttp.ClientSession) -> float:
        """Wait (bounded) until no client and no user is left; return how long it took."""
        started = time.monotonic()
        async with asyncio.timeout(SETTLE_TIMEOUT_S):
            while True:
                status = await self.get_json(http, "/status")
                if status["connectedClients"] == 0 and status["uniqueUsers"] == 0:
                    break
                await asyncio.sleep(0.2)
        await asyncio.sleep(QUIET_S)
        return time.monotonic() - started

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it will not go; the exit status of the first."""
        if self.process.returncode is not None:
            return self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), SERVER_STOP_TIMEOUT_S)
        except TimeoutError:
            await self.kill()
            return None

    async def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await asyncio.wait_for(self.process.wait(), SERVER_STOP_TIMEOUT_S)


def soak_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "NODE_ENV": "test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'soak.db'}",
        "MIGRATE_ON_START": "true",
        "JWT_SECRET": SECRET,
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "json",
        "PRESENCE_GRACE_MS": "200",
        "TYPING_TIMEOUT_MS": "500",
        "AUTH_TIMEOUT_MS": "3000",
        # An abandoned polling session is timed out within about nine seconds. The
        # clients share this test's one process and event loop, so under load a
        # PONG (the listener's above all) can wait seconds behind the others' work:
        # a shorter timeout drops live clients, which is no fault of the server's.
        "PING_INTERVAL_MS": "1000",
        "PING_TIMEOUT_MS": "8000",
        "RATE_LIMIT_EVENTS": "0",
        "RATE_LIMIT_MESSAGES": "0",
        "MAX_CONNECTIONS_PER_USER": "0",
        "MAX_UNAUTHENTICATED_PER_IP": "0",
    }


@pytest.fixture
async def soak_server(tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, World]]:
    env = soak_env(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    world = await build_world(env, url)
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port),
            cwd=tmp_path, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServerProcess(process, url, tmp_path / "soak.db", log_path)
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(SERVER_UP_TIMEOUT_S):
            while True:
                assert process.returncode is None, log_path.read_text()
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url + "/health") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.1)
        yield server, world
    finally:
        await server.kill()


def stored_messages(db_path: Path) -> list[tuple[int, int, str, str, str]]:
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        rows: list[tuple[int, int, str, str, str]] = db.execute(
            "SELECT id, conversation_id, sender_id, client_message_id, text FROM chat_messages"
        ).fetchall()
        return rows


def error_lines(log_path: Path) -> list[str]:
    """Log lines at error level or above, and tracebacks, from the server's output."""
    bad = []
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line or "ERROR" in line or "CRITICAL" in line:
                bad.append(line)
            continue
        if isinstance(record, dict) and record.get("level") in ("error", "critical"):
            bad.append(line)
    return bad


def report(label: str, snapshot: Snapshot) -> str:
    return (f"{label}: RSS {snapshot.rss_kb / 1024:.1f} MiB, {snapshot.fds} fds, "
            f"{snapshot.threads} threads, clients {snapshot.status['connectedClients']}, "
            f"users {snapshot.status['uniqueUsers']}")


async def test_soak_server_process_returns_to_its_baseline(
    soak_server: tuple[ServerProcess, World],
) -> None:
    server, world = soak_server
    async with aiohttp.ClientSession() as http:
        start = await server.snapshot(http)

        warmup = Tally()
        await load(world, warmup, WARMUP_S, seed=1)
        await server.settle(http)
        baseline = await server.snapshot(http)

        tally = Tally()
        listener = ChatClient(world.url)
        try:
            await listener.connect(token=world.tokens[LISTENER])
            await listener.wait_for("authenticated")
            for conversation in world.everything:
                reply = await listener.call("conversation:join", {"conversationId": conversation})
                assert reply["ok"], reply
            await load(world, tally, LOAD_S, seed=2)
            peak = await server.snapshot(http)

            # Fan-out lost nothing: the listener, in every room throughout, got every message.
            ids = {message_id for message_id, _, _ in tally.acked.values()}
            try:
                await listener.wait_for(
                    "message:new", lambda m: m["id"] in ids, count=len(ids), within=WAIT_S * 6
                )
            finally:
                heard = {m["id"] for m in listener.received("message:new")}
                missing = sorted(ids - heard)
                assert not missing, (
                    f"listener heard {len(ids & heard)} of {len(ids)} messages, connected: "
                    f"{listener.sio.connected} {listener.disconnect_reason}; "
                    f"first missing {missing[:10]}")
        finally:
            await listener.close()

        settled_in = await server.settle(http)
        after = await server.snapshot(http)

    figures = "\n".join([
        report("start", start), report("baseline (after warm-up)", baseline),
        report("peak (end of load)", peak), report(f"after (settled in {settled_in:.1f} s)", after),
        f"sessions {dict(tally.sessions)}", f"actions {dict(tally.actions)}",
        f"refusals {dict(tally.refusals)}", f"messages acknowledged {len(tally.acked)}",
    ])
    print(figures)  # the measured figures, with -s

    # The clients met no failure but the ones they provoked.
    assert warmup.unexpected == [] and tally.unexpected == [], tally.unexpected or warmup.unexpected
    assert set(tally.refusals) <= PROVOKED
    assert tally.sessions["abrupt"] >= 20 and len(tally.acked) >= 500, figures

    # State drained: no client, no user, no connection counted.
    assert after.status["connectedClients"] == 0 and after.status["uniqueUsers"] == 0
    assert after.counter("ecigdis_ws_connections") == 0
    assert after.counter("ecigdis_ws_authenticated_users") == 0

    # The server counted exactly the refusals the clients saw, and no other error.
    assert after.errors() - baseline.errors() == tally.refusals, figures
    assert (after.counter("ecigdis_ws_messages_stored_total")
            - baseline.counter("ecigdis_ws_messages_stored_total")) == len(tally.acked)

    # Resources back where they were.
    assert after.rss_kb - baseline.rss_kb < RSS_GROWTH_LIMIT_KB, figures
    assert after.fds <= baseline.fds + FD_MARGIN, figures
    assert after.threads <= baseline.threads + THREAD_MARGIN, figures

    # Every acknowledged message is stored exactly once, as sent.
    rows = stored_messages(server.db_path)
    by_key = Counter((sender, client_id) for _, _, sender, client_id, _ in rows)
    assert max(by_key.values()) == 1
    stored = {(int(sender), client_id): (i, c, text) for i, c, sender, client_id, text in rows}
    for key, message in {**warmup.acked, **tally.acked}.items():
        assert stored.get(key) == message, key
    assert len(rows) == len(warmup.acked) + len(tally.acked)

    log = server.log_path.read_text(encoding="utf-8")
    assert '"event": "listening"' in log, log  # the log is captured: its silence means it
    assert error_lines(server.log_path) == []
    started = time.monotonic()
    assert await server.stop() == 0, "no clean exit on SIGTERM"
    assert time.monotonic() - started < SERVER_STOP_TIMEOUT_S


# -- the same in process, where asyncio tasks can be counted -------------------------------


@dataclasses.dataclass(frozen=True)
class InProcessState:
    loop_tasks: int
    chat_tasks: int
    sessions: int
    users: int
    typing: int
    timers: int

    @classmethod
    def of(cls, server: RunningServer) -> InProcessState:
        chat = server.chat
        return cls(
            loop_tasks=len(asyncio.all_tasks()),
            chat_tasks=len(chat.tasks),
            sessions=chat.sessions.count,
            users=chat.presence.user_count,
            typing=chat.typing.active,
            timers=server.clock.pending,
        )


IN_PROCESS_CLIENTS = 12
IN_PROCESS_LOAD_S = 6.0
TASKS_SETTLE_S = 5.0  # several ping intervals (1 s here)


async def tasks_settle(baseline: int, within: float) -> list[str]:
    """Wait (bounded) until the loop runs no more tasks than `baseline`; name the rest."""
    deadline = time.monotonic() + within
    while len(asyncio.all_tasks()) > baseline and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    return sorted(repr(task.get_coro()) for task in asyncio.all_tasks())


async def in_process_round(server: RunningServer, world: World, tally: Tally,
                           seconds: float, seed: int) -> None:
    deadline = time.monotonic() + seconds
    personas = [
        Persona(i, world, tally, random.Random(seed * 1000 + i), USERS[i % 6], seed)
        for i in range(IN_PROCESS_CLIENTS)
    ]
    async with asyncio.timeout(seconds + 60):
        await asyncio.gather(*(persona.live(deadline) for persona in personas))
    # Everyone has gone; wait until the server has handled every disconnect,
    # then let the grace periods, typing timeouts and auth timeouts run out.
    await server.wait_until(lambda: server.chat.sessions.count == 0, within=15)
    await server.advance(60)


@pytest.mark.backends("sqlite")
async def test_soak_in_process_state_drains(make_server: ServerFactory) -> None:
    async with make_server(
        RATE_LIMIT_EVENTS="0", RATE_LIMIT_MESSAGES="0", MAX_CONNECTIONS_PER_USER="0",
        MAX_UNAUTHENTICATED_PER_IP="0", PING_INTERVAL_MS="1000", PING_TIMEOUT_MS="2000",
    ) as server:
        members = [USERS[i] for i in range(6)]
        home = await server.conversation(*members)
        other = await server.conversation(*members[:3])
        closed = await server.conversation(OUTSIDER_ONLY)
        world = World(
            server.url,
            {user: server.token(user, ttl_s=10 * 3600) for user in members},
            {user: [home, other] if user in members[:3] else [home] for user in members},
            [home, other],
            closed,
        )
        warmup = Tally()
        await in_process_round(server, world, warmup, 2.0, seed=1)
        before = InProcessState.of(server)

        tally = Tally()
        await in_process_round(server, world, tally, IN_PROCESS_LOAD_S, seed=2)
        # python-engineio's ping task of a closed socket ends at its next ping interval.
        leftovers = await tasks_settle(before.loop_tasks, within=TASKS_SETTLE_S)
        after = InProcessState.of(server)
        print(f"in process: before {before}\n            after  {after}\n"
              f"            sessions {dict(tally.sessions)} actions {dict(tally.actions)}")

        assert warmup.unexpected == [] and tally.unexpected == [], tally.unexpected
        assert tally.sessions["abrupt"] >= 3 and len(tally.acked) >= 50, tally
        assert after.sessions == 0 and after.users == 0 and after.typing == 0
        assert after.chat_tasks == 0
        assert after.loop_tasks <= before.loop_tasks, leftovers
        assert after.timers <= before.timers, (before, after)
        stored = await server.chat.storage.messages.messages_after(home, 0, 100_000)
        stored += await server.chat.storage.messages.messages_after(other, 0, 100_000)
        assert len(stored) == len(warmup.acked) + len(tally.acked)
        assert {m.id for m in stored} == {
            i for i, _, _ in (*warmup.acked.values(), *tally.acked.values())
        }
