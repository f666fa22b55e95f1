"""The second hardening probe (issue 25), as a repeatable measurement.

Starts the real server (`ecigdis-ws serve`, SQLite in a temporary folder) once per
scenario, runs one hostile client beside one well-behaved user (the victim, who
sends a message every 250 ms and times its ack), and samples the server process
from /proc every 0.5 s: open file descriptors, RSS, CPU. Each scenario writes one
JSON file and prints one line: peak fds, RSS at start/peak/end, CPU seconds in the
10 s after the attacker left, the victim's ack p50/p95/max and failures, and the
tracebacks and ERROR lines in the server's log.

    .venv/bin/python benchmarks/hostile.py --all --out benchmarks/results/issue25/after

Only loopback traffic; every scenario stops by itself. The sizes are the probe's,
scaled down where the probe's would take minutes on a shared two-core machine
(20,000 seeded messages instead of 50,000); each scenario says what it sends.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from ecigdis_ws.bench.wire import accept_key, control_frame, text_frame, upgrade_request
from ecigdis_ws.clock import SystemClock
from ecigdis_ws.services.auth import mint_token
from ecigdis_ws.settings import load_settings
from ecigdis_ws.storage.factory import open_storage

SECRET = "hostile-probe-secret-0123456789abcdef"
VICTIM, ATTACKER, BYSTANDER = 2, 3, 4
BIG = 20_000  # messages in the big conversation (the probe's 50,000, scaled down)
AFTER_S = 10.0  # CPU is summed over this long after the attacker left
POLLING = "/socket.io/?EIO=4&transport=polling"
WEBSOCKET = "/socket.io/?EIO=4&transport=websocket"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """The server process under test, and what its log said."""

    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, user_id: int) -> str:
        settings = load_settings(self.env, dotenv_path=None)
        return mint_token(settings, SystemClock(), user_id, f"user{user_id}", 3600)

    def sample(self) -> dict[str, float]:
        pid = self.process.pid
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        rss_kb = next(int(line.split()[1]) for line in
                      Path(f"/proc/{pid}/status").read_text().splitlines()
                      if line.startswith("VmRSS:"))
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return {"t": time.monotonic(), "fds": fds, "rss_mb": rss_kb / 1024, "cpu_s": cpu_s}

    def log_problems(self) -> dict[str, int]:
        text = self.log_path.read_text(errors="replace")
        return {"tracebacks": text.count("Traceback"),
                "error_lines": sum("[error" in line or '"level": "error"' in line
                                   for line in text.splitlines())}


async def start_server(folder: Path, seed_big: bool, **extra: str) -> tuple[Server, int, int]:
    """The server on a free port, with a small conversation for the victim and,
    if asked, one of BIG messages; their ids."""
    port = free_port()
    env = {**os.environ, "WS_PORT": str(port), "JWT_SECRET": SECRET,
           "DATABASE_URL": f"sqlite:///{folder}/chat.db", "LOG_LEVEL": "info", **extra}
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "ecigdis-ws"), "migrate"], env=env,  # noqa: ASYNC221
                   check=True, capture_output=True)  # (before the server: nothing to block)
    storage = await open_storage(load_settings(env, dotenv_path=None))
    now = int(time.time() * 1000)
    small = await storage.conversations.create_conversation("victim", [VICTIM, BYSTANDER], now)
    big = await storage.conversations.create_conversation("big", [ATTACKER, VICTIM], now)
    if seed_big:
        for start in range(0, BIG, 500):
            await asyncio.gather(*(
                storage.messages.store_message(
                    big, VICTIM, "user2", f"s{i}", f"old {i} " + "x" * 200, now
                )
                for i in range(start, min(start + 500, BIG))))
    await storage.close()
    log_path = folder / "server.log"
    process = subprocess.Popen([str(bin_dir / "ecigdis-ws"), "serve"], env=env,  # noqa: ASYNC220
                               stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    server = Server(port, env, process, log_path)
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(server.url + "/health") as health:
                    if health.status == 200:
                        return server, small, big
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the server did not start")


class Victim:
    """A well-behaved user who chats and times every ack."""

    def __init__(self, server: Server, conversation: int) -> None:
        self.server = server
        self.conversation = conversation
        self.latencies_ms: list[float] = []
        self.failures = 0
        self.sio = socketio.AsyncClient(reconnection=False)
        self._stop = asyncio.Event()

    async def run(self) -> None:
        await self.sio.connect(self.server.url, auth={"token": self.server.token(VICTIM)},
                               transports=["websocket"], wait_timeout=10)
        await self.sio.call("conversation:join", {"conversationId": self.conversation},
                            timeout=10)
        n = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                reply = await self.sio.call("message:send", {
                    "conversationId": self.conversation, "text": f"hello {n}",
                    "messageId": f"v{n}-{started}"}, timeout=5)
                if isinstance(reply, dict) and reply.get("ok"):
                    self.latencies_ms.append((time.monotonic() - started) * 1000)
                else:
                    self.failures += 1
            except Exception:
                self.failures += 1
                if not self.sio.connected:
                    return
            n += 1
            await asyncio.sleep(0.25)

    async def stop(self, running: asyncio.Future[None]) -> None:
        """Stop after the call in flight, then leave."""
        self._stop.set()
        await asyncio.wait_for(running, 10)
        if self.sio.connected:
            await self.sio.disconnect()

    def figures(self) -> dict[str, Any]:
        values = sorted(self.latencies_ms)
        if not values:
            return {"acks": 0, "failures": self.failures}
        return {"acks": len(values), "failures": self.failures,
                "p50_ms": round(statistics.median(values), 1),
                "p95_ms": round(values[int(0.95 * (len(values) - 1))], 1),
                "max_ms": round(values[-1], 1)}


class RawSocket:
    """A TCP connection that writes exactly what it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 head: bytes) -> None:
        self.reader, self.writer, self.head = reader, writer, head

    @classmethod
    async def open(cls, server: Server, target: str) -> RawSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        key = base64.b64encode(os.urandom(16))
        writer.write(upgrade_request(f"127.0.0.1:{server.port}", target, key))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert accept_key(key)  # (the head says whether the upgrade was accepted)
        return cls(reader, writer, head)

    @property
    def accepted(self) -> bool:
        return self.head.startswith(b"HTTP/1.1 101")

    def send(self, *texts: str) -> None:
        self.writer.write(b"".join(text_frame(text.encode()) for text in texts))

    async def signed_in(self, server: Server, user_id: int) -> None:
        self.send("40" + json.dumps({"token": server.token(user_id)}))
        await asyncio.wait_for(self.reader.readuntil(b"40{"), 10)

    def reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


async def polling_session(server: Server, http: aiohttp.ClientSession,
                          user_id: int | None = None) -> str:
    async with http.get(server.url + POLLING) as response:
        sid: str = json.loads((await response.text())[1:])["sid"]
    if user_id is not None:
        url = f"{server.url}{POLLING}&sid={sid}"
        async with http.post(url, data="40" + json.dumps({"token": server.token(user_id)})):
            pass
        async with http.get(url) as response:
            await response.read()
    return sid


def join(conversation: int, since: int | None = None, ack: int | None = None) -> str:
    data: dict[str, Any] = {"conversationId": conversation}
    if since is not None:
        data["since"] = since
    return f"42{'' if ack is None else ack}" + json.dumps(["conversation:join", data])


# -- scenarios: each returns its own figures; the runner measures around it ----------

Attack = Callable[[Server, int, int, dict[str, Any]], Awaitable[None]]


async def upgrade_flood(server: Server, small: int, big: int, out: dict[str, Any]) -> None:
    """5 polling handshakes, then for 1 s as many upgrades as each sid takes, none
    sending the probe."""
    held: list[RawSocket] = []
    refused = 0
    async with aiohttp.ClientSession() as http:
        sids = [await polling_session(server, http) for _ in range(5)]
        until = time.monotonic() + 1.0
        while time.monotonic() < until and len(held) + refused < 3000:
            for sid in sids:
                try:
                    raw = await RawSocket.open(server, f"{WEBSOCKET}&sid={sid}")
                except (OSError, asyncio.IncompleteReadError, TimeoutError):
                    refused += 1
                    continue
                if raw.accepted:
                    held.append(raw)
                else:
                    refused += 1
                    raw.reset()
        out["upgrades_accepted"], out["upgrades_refused"] = len(held), refused
        out["fds_while_held"] = server.sample()["fds"]
        try:
            async with http.get(server.url + "/health") as health:
                out["health_while_held"] = health.status
        except aiohttp.ClientError as exc:
            out["health_while_held"] = type(exc).__name__
    await asyncio.sleep(12)  # past the upgrade deadline (10 s) and the auth deadline
    out["fds_12s_later"] = server.sample()["fds"]
    for raw in held:
        raw.reset()


async def poll_queue(server: Server, small: int, big: int, out: dict[str, Any]) -> None:
    """5 signed-in polling sockets in the victim's conversation that never GET but
    POST a PONG every 2 s, for 50 s while the victim chats (past the first PING at
    25 s plus the ping timeout of 20 s)."""
    async with aiohttp.ClientSession() as http:
        sids = [await polling_session(server, http, BYSTANDER) for _ in range(5)]
        for sid in sids:
            async with http.post(f"{server.url}{POLLING}&sid={sid}", data=join(small)):
                pass
        for _ in range(25):
            for sid in sids:
                async with http.post(f"{server.url}{POLLING}&sid={sid}", data="3") as reply:
                    await reply.read()
            await asyncio.sleep(2)
        answers = []
        for sid in sids:
            async with http.get(f"{server.url}{POLLING}&sid={sid}") as reply:
                answers.append((reply.status, len(await reply.read())))
        out["final_get_status_bytes"] = answers


async def poll_replay(server: Server, small: int, big: int, out: dict[str, Any]) -> None:
    """One signed-in polling socket POSTs ten `since: 0` joins of the big
    conversation in one body, then GETs once."""
    async with aiohttp.ClientSession() as http:
        sid = await polling_session(server, http, ATTACKER)
        body = "\x1e".join(join(big, 0) for _ in range(10))
        out["post_bytes"] = len(body)
        url = f"{server.url}{POLLING}&sid={sid}"
        async with http.post(url, data=body) as reply:
            out["post_status"] = reply.status
        await asyncio.sleep(3)
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=60)) as reply:
            out["get_status"], out["get_bytes"] = reply.status, len(await reply.read())


async def queued_work(server: Server, small: int, big: int, out: dict[str, Any]) -> None:
    """120 pairs of (join `since: 0` of the big conversation, PONG) in one write,
    then a reset."""
    raw = await RawSocket.open(server, WEBSOCKET)
    await raw.signed_in(server, ATTACKER)
    frames = [text for _ in range(120) for text in (join(big, 0), "3")]
    out["burst_bytes"] = sum(len(text) for text in frames)
    raw.send(*frames)
    await raw.writer.drain()
    raw.reset()
    await online_for(server, ATTACKER, out)


async def online_for(server: Server, user_id: int, out: dict[str, Any]) -> None:
    """How long the user stays online after leaving (presence, seen by a bystander)."""
    left = time.monotonic()
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(server.url, auth={"token": server.token(BYSTANDER)},
                      transports=["websocket"])
    try:
        while time.monotonic() - left < 60:
            try:
                reply = await sio.call("presence:request", timeout=5)
            except TimeoutError:
                continue
            users = [user["userId"] for user in reply.get("users", [])]
            if user_id not in users:
                break
            await asyncio.sleep(0.5)
        out["online_after_leaving_s"] = round(time.monotonic() - left, 1)
    finally:
        await sio.disconnect()


async def stalled_readers(server: Server, small: int, big: int, out: dict[str, Any]) -> None:
    """20 websockets of one user in the big conversation that stop reading for 20 s
    while others chat there (2 KB messages), then close."""
    stalled = []
    for _ in range(20):
        raw = await RawSocket.open(server, WEBSOCKET)
        raw.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await raw.signed_in(server, ATTACKER)
        raw.send(join(big, 0))
        stalled.append(raw)
    sender = socketio.AsyncClient(reconnection=False)
    await sender.connect(server.url, auth={"token": server.token(VICTIM)},
                         transports=["websocket"])
    await sender.call("conversation:join", {"conversationId": big})
    until, n = time.monotonic() + 20, 0
    while time.monotonic() < until:
        await sender.call("message:send", {"conversationId": big, "text": "y" * 2000,
                                           "messageId": f"big{n}"}, timeout=10)
        n += 1
        await asyncio.sleep(0.2)
    await sender.disconnect()
    for raw in stalled:
        raw.reset()
    newcomer = socketio.AsyncClient(reconnection=False)
    try:
        await newcomer.connect(server.url, auth={"token": server.token(ATTACKER)},
                               transports=["websocket"], wait_timeout=10)
        out["new_connection_for_that_user"] = "accepted"
        await newcomer.disconnect()
    except socketio.exceptions.ConnectionError as exc:
        out["new_connection_for_that_user"] = f"refused: {exc}"


async def long_replays(server: Server, small: int, big: int, out: dict[str, Any]) -> None:
    """20 well-formed clients join `since: 0` of the big conversation at once."""
    clients = [socketio.AsyncClient(reconnection=False) for _ in range(20)]
    received = [0] * len(clients)
    for index, client in enumerate(clients):
        def count(_data: Any, index: int = index) -> None:
            received[index] += 1
        client.on("message:new", count)
        await client.connect(server.url, auth={"token": server.token(ATTACKER)},
                             transports=["websocket"])
    replies = await asyncio.gather(*(
        client.call("conversation:join", {"conversationId": big, "since": 0}, timeout=60)
        for client in clients), return_exceptions=True)
    await asyncio.sleep(2)
    out["disconnected"] = sum(not client.connected for client in clients)
    out["replayed_per_client"] = max(received)
    out["resync_answers"] = sum(isinstance(r, dict) and bool(r.get("resync")) for r in replies)
    for client in clients:
        if client.connected:
            await client.disconnect()


async def rest_deep_json(server: Server, small: int, big: int, out: dict[str, Any]) -> None:
    """50 POSTs of 1,100 nested arrays to the REST messages route."""
    headers = {"Authorization": f"Bearer {server.token(VICTIM)}",
               "Content-Type": "application/json"}
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession() as http:
        for _ in range(50):
            async with http.post(f"{server.url}/api/messenger/conversations/{small}/messages",
                                 data="[" * 1100 + "]" * 1100, headers=headers) as reply:
                statuses[reply.status] = statuses.get(reply.status, 0) + 1
            await asyncio.sleep(0.1)
    out["statuses"] = statuses


async def api_key_bytes(server: Server, small: int, big: int, out: dict[str, Any]) -> None:
    """20 requests to the server API with the raw bytes \\xff\\xfe as X-API-Key."""
    statuses: dict[str, int] = {}
    for _ in range(20):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /api/server/conversations/1/messages HTTP/1.1\r\nHost: x\r\n"
                     b"X-API-Key: \xff\xfe\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        status = (await reader.readline()).split(b" ")[1].decode()
        statuses[status] = statuses.get(status, 0) + 1
        writer.close()
    out["statuses"] = statuses


async def ping_flood(server: Server, small: int, big: int, out: dict[str, Any]) -> None:
    """5 websockets that send PING frames for 2.5 s without reading, then reset."""
    floods = [await RawSocket.open(server, WEBSOCKET) for _ in range(5)]
    for _ in range(50):
        for raw in floods:
            raw.writer.write(control_frame(0x9, b"x" * 125) * 2000)
        await asyncio.sleep(0.05)
    for raw in floods:
        raw.reset()


async def token_in_log(server: Server, small: int, big: int, out: dict[str, Any]) -> None:
    """A refused (expired) token at the handshake: is any of it in the log?"""
    settings = load_settings(server.env, dotenv_path=None)
    expired = mint_token(settings, SystemClock(), ATTACKER, "user3", -60)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}{POLLING}&token={expired}") as reply:
            out["handshake_status"] = reply.status
        ws = await http.ws_connect(f"{server.url}{WEBSOCKET}")
        await ws.receive()
        await ws.send_str("40" + json.dumps({"token": expired}))
        await ws.receive(timeout=5)
        await ws.close()
    await asyncio.sleep(0.5)
    text = server.log_path.read_text(errors="replace")
    # A token that aiohttp cannot even parse as part of a request line.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET {POLLING}&token={expired}\x01 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    out["unparsable_status"] = (await reader.readline()).decode().strip()
    writer.close()
    # A token past aiohttp's 8,190-byte line limit, whose error quotes the line's start.
    giant = expired + "A" * 9000
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET {POLLING}&token={giant} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    out["giant_status"] = (await reader.readline()).decode().strip()
    writer.close()
    await asyncio.sleep(0.5)
    text = server.log_path.read_text(errors="replace")
    out["token_parts_in_log"] = sum(part[:20] in text for part in expired.split("."))


SCENARIOS: dict[str, tuple[Attack, bool, dict[str, str]]] = {
    "upgrade-flood": (upgrade_flood, False, {}),
    "poll-queue": (poll_queue, False, {}),
    "poll-replay": (poll_replay, True, {}),
    "queued-work": (queued_work, True, {}),
    "stalled-readers": (stalled_readers, True, {"RATE_LIMIT_MESSAGES": "0"}),
    "long-replays": (long_replays, True, {}),
    "rest-deep-json": (rest_deep_json, False, {"RATE_LIMIT_EVENTS": "0"}),
    "api-key-bytes": (api_key_bytes, False, {"API_KEY": "k" * 40}),
    "ping-flood": (ping_flood, False, {}),
    "token-in-log": (token_in_log, False, {}),
}


@dataclass
class Samples:
    rows: list[dict[str, float]] = field(default_factory=list)


async def sample_forever(server: Server, samples: Samples) -> None:
    while server.process.poll() is None:
        try:
            samples.rows.append(server.sample())
        except (FileNotFoundError, ProcessLookupError):
            return
        await asyncio.sleep(0.5)


async def run(name: str) -> dict[str, Any]:
    attack, seed_big, extra = SCENARIOS[name]
    with tempfile.TemporaryDirectory() as folder:
        server, small, big = await start_server(Path(folder), seed_big, **extra)
        figures: dict[str, Any] = {"scenario": name}
        samples = Samples()
        sampler = asyncio.ensure_future(sample_forever(server, samples))
        victim = Victim(server, small)
        chatting = asyncio.ensure_future(victim.run())
        try:
            await asyncio.sleep(2)
            start = server.sample()
            try:
                await asyncio.wait_for(attack(server, small, big, figures), 120)
            except Exception as exc:
                figures["attack_error"] = f"{type(exc).__name__}: {exc}"[:300]
            left = server.sample()
            await asyncio.sleep(AFTER_S)
            after = server.sample()
            await victim.stop(chatting)
        finally:
            sampler.cancel()
            server.process.terminate()
            server.process.wait(10)
        rows = samples.rows or [start]
        figures.update({
            "fds_start": start["fds"], "fds_peak": max(row["fds"] for row in rows),
            "fds_end": after["fds"],
            "rss_mb_start": round(start["rss_mb"], 1),
            "rss_mb_peak": round(max(row["rss_mb"] for row in rows), 1),
            "rss_mb_end": round(after["rss_mb"], 1),
            "cpu_s_during": round(left["cpu_s"] - start["cpu_s"], 2),
            "cpu_s_10s_after_left": round(after["cpu_s"] - left["cpu_s"], 2),
            "victim": victim.figures(),
            **server.log_problems(),
        })
        return figures


# Figures beyond the common ones that say whether the scenario's attack held.
TELLING = ("upgrades_accepted", "fds_12s_later", "final_get_status_bytes", "get_bytes",
           "online_after_leaving_s", "cpu_s_during", "disconnected", "replayed_per_client",
           "statuses", "token_parts_in_log", "new_connection_for_that_user")


def compare(before_dir: Path, after_dir: Path) -> str:
    """A markdown table of two runs, scenario by scenario."""
    lines = ["| scenario | run | fds peak | RSS start→peak MB | CPU 10 s after, s | "
             "victim p95 / max ms | tracebacks | what the attack got |",
             "|---|---|---|---|---|---|---|---|"]
    for name in SCENARIOS:
        for label, folder in (("before", before_dir), ("after", after_dir)):
            path = folder / f"{name}.json"
            if not path.exists():
                continue
            f = json.loads(path.read_text())
            victim = f["victim"]
            telling = "; ".join(f"{key} {f[key]}" for key in TELLING if key in f)
            lines.append(
                f"| {name} | {label} | {f['fds_peak']} | {f['rss_mb_start']}→{f['rss_mb_peak']}"
                f" | {f['cpu_s_10s_after_left']} | {victim.get('p95_ms')} / "
                f"{victim.get('max_ms')} | {f['tracebacks']} | {telling} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--all", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                        help="print a markdown table of two runs' results instead")
    options = parser.parse_args()
    if options.compare:
        print(compare(*options.compare))
        return 0
    if options.out is None:
        parser.error("--out is required to run scenarios")
    names = list(SCENARIOS) if options.all else (options.scenario or [])
    for name in names:
        figures = asyncio.run(run(name))
        options.out.mkdir(parents=True, exist_ok=True)
        (options.out / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
        victim = figures["victim"]
        print(f"{name}: fds {figures['fds_start']}→{figures['fds_peak']}→{figures['fds_end']}, "
              f"RSS {figures['rss_mb_start']}→{figures['rss_mb_peak']}→{figures['rss_mb_end']} MB, "
              f"CPU after {figures['cpu_s_10s_after_left']} s, victim p95 "
              f"{victim.get('p95_ms')} ms ({victim['failures']} failed), "
              f"tracebacks {figures['tracebacks']}, errors {figures['error_lines']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
