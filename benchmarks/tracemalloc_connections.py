"""Where the memory of an idle authenticated connection goes, by Python allocation.

Runs the server in this process with tracemalloc on (SQLite in a scratch folder, the
settings compare.sh gives the memory scenario), lets `ecigdis-ws bench --scenario
connect` open --clients connections from another process (each authenticates in the
handshake and joins its conversation of 5), and once every one has joined and the
server has been quiet for a moment, compares a snapshot with one taken before the
clients came. Allocations are grouped by traceback and divided by the number of
connections: the table is bytes per connection, largest first, each row named by its
innermost frame and the nearest frame of the project or of a library it came through.

    .venv/bin/python benchmarks/tracemalloc_connections.py            # 1,000 clients
    .venv/bin/python benchmarks/tracemalloc_connections.py --clients 500 --top 25

tracemalloc sees Python's allocations only (not the C library's, nor the kernel's
socket buffers), so the total is below the resident growth that compare.sh measures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import uvloop
from aiohttp import web

from ecigdis_ws.app import create_app
from ecigdis_ws.settings import load_settings
from ecigdis_ws.transport.app_keys import SERVICES
from ecigdis_ws.transport.socketio_overrides.server import SOCKET_SERVER

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "ecigdis-ws"
# The settings compare.sh gives every server it measures (BENCH_SETTINGS there).
BENCH_SETTINGS = {
    "NODE_ENV": "production",
    "RATE_LIMIT_MESSAGES": "0",
    "RATE_LIMIT_EVENTS": "0",
    "MAX_CONNECTIONS_PER_USER": "0",
    "MAX_UNAUTHENTICATED_PER_IP": "0",
    "LOG_LEVEL": os.environ.get("TM_LOG_LEVEL", "warning"),
    "MIGRATE_ON_START": "true",
    # tracemalloc slows the server several times over, and a connect storm then
    # keeps some handshakes waiting past the 10 s default: a connection that is not
    # authenticated by then is closed, and the bench does not retry it.
    "AUTH_TIMEOUT_MS": "120000",
}
# A warm-up of a few connections first, with other users and conversations, so that
# what is created once per process (caches, imports, the first task's context) is
# not counted per connection.
WARMUP_CLIENTS = 20
WARMUP_BASE = 2_000_000
# The server is taken as settled once its connection and room counts have not moved
# for this long (joins and presence broadcasts finish after the handshakes).
QUIET_S = 3.0
SETTLE_TIMEOUT_S = 300.0
GIVE_UP_S = 20.0
# Frames kept per allocation: deep enough to reach from the allocation up to the
# handler that caused it through aiohttp's and asyncio's frames.
DEFAULT_FRAMES = 25
# Frames that say nothing about who allocated: the interpreter's and asyncio's own,
# the event loop's, and this script's.
PLUMBING = ("/asyncio/", "/tracemalloc.py", "<frozen ", "/typing.py", "/enum.py",
            "/functools.py", "/contextlib.py", "/dataclasses.py", "/abc.py", "/uvloop/",
            __file__)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# What is cut from a file name: a library's folder, the project's, the stdlib's.
_PREFIXES = (re.compile(r"^.*/site-packages/"), re.compile(r"^.*/src/"),
             re.compile(r"^.*/lib/python3\.\d+/"))


def short(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for prefix in _PREFIXES:
        name, cut = prefix.subn("", name)
        if cut:
            break
    return f"{name}:{frame.lineno}"


def package(frame: tracemalloc.Frame) -> str:
    return short(frame).split("/", 1)[0]


def telling_frames(trace: tracemalloc.Traceback) -> tuple[str, str]:
    """The innermost frame outside the interpreter's and asyncio's plumbing, and the
    innermost of another package that led to it (who asked for the allocation)."""
    # (a Traceback runs from the oldest frame to the most recent)
    frames = [f for f in reversed(trace) if not any(p in f.filename for p in PLUMBING)]
    if not frames:
        return short(trace[-1]), ""
    caller = next((f for f in frames if package(f) != package(frames[0])), None)
    return short(frames[0]), short(caller) if caller is not None else ""


async def bench(url: str, env: dict[str, str], clients: int, base: int, settle_s: float,
                log: Path) -> asyncio.subprocess.Process:
    argv = [str(SCRIPT), "bench", url, "--scenario", "connect", "--clients", str(clients),
            "--user-base", str(base), "--conversation-base", str(base), "--setup",
            "--settle", str(settle_s), "--connect-timeout", "120", "--no-progress"]
    with log.open("wb") as output:  # (its report, and its workers' complaints when stopped)
        return await asyncio.create_subprocess_exec(*argv, env=env, stdout=output,
                                                    stderr=subprocess.STDOUT)


async def wait_quiet(counts: Callable[[], tuple[int, int]], clients: int) -> None:
    """Until `clients` are connected and nothing has moved for QUIET_S, or nothing
    has moved for GIVE_UP_S with fewer (a few of a storm's handshakes sometimes
    fail under tracemalloc's slowness, before and after the websocket entry alike:
    the figure is then per connection that is open)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    last, since = counts(), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        now, still = counts(), time.monotonic() - since
        if now != last:
            last, since = now, time.monotonic()
        elif (now[0] >= clients and still >= QUIET_S) or (now[0] and still >= GIVE_UP_S):
            return
    raise SystemExit(f"the clients did not settle within {SETTLE_TIMEOUT_S:g} s "
                     f"(sessions, room members): {last}; see the bench's log")


async def measure(options: argparse.Namespace) -> list[str]:
    scratch = Path(tempfile.mkdtemp(prefix="ecigdis-tracemalloc-"))
    env = {**BENCH_SETTINGS, "JWT_SECRET": secrets.token_urlsafe(32),
           "DATABASE_URL": f"sqlite:///{scratch / 'chat.db'}", "HOME": str(scratch),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    app = create_app(load_settings(env, dotenv_path=None))
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    sio = app[SOCKET_SERVER]

    def counts() -> tuple[int, int]:
        rooms = sio.manager.rooms.get("/", {})
        return app[SERVICES].sessions.count, sum(len(members) for members in rooms.values())

    print(f"server on {url}, scratch folder {scratch}", file=sys.stderr)
    try:
        await (await bench(url, env, WARMUP_CLIENTS, WARMUP_BASE, 0,
                           scratch / "warmup.log")).wait()
        await wait_quiet(counts, 0)
        gc.collect()
        before = tracemalloc.take_snapshot()
        measured = await bench(url, env, options.clients, 1_000_000, SETTLE_TIMEOUT_S,
                               scratch / "bench.log")
        try:
            await wait_quiet(counts, options.clients)
            gc.collect()
            after = tracemalloc.take_snapshot()
            connections = len(sio.eio.sockets)
        finally:
            measured.terminate()  # (its clients are idle until the settle time ends)
            await measured.wait()
    finally:
        await runner.cleanup()
    if connections != options.clients:
        print(f"{connections} of {options.clients} connections open: the figures are per "
              "connection open", file=sys.stderr)
    return table(before, after, connections, options.top, options.tracebacks)


def table(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, clients: int,
          top: int, full: bool) -> list[str]:
    ignored = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(ignored).compare_to(before.filter_traces(ignored), "traceback")
    total = sum(stat.size_diff for stat in stats)
    lines = [
        f"tracemalloc, {clients:,} idle authenticated connections open: "
        f"{total / clients / 1024:.2f} KiB per connection in all "
        f"(Python allocations only), top {top} tracebacks:",
        "",
        "| bytes/conn | blocks/conn | allocated in | on behalf of |",
        "|---:|---:|---|---|",
    ]
    for stat in sorted(stats, key=lambda s: s.size_diff, reverse=True)[:top]:
        where, caller = telling_frames(stat.traceback)
        lines.append(f"| {stat.size_diff / clients:,.0f} | {stat.count_diff / clients:.2f} | "
                     f"`{where}` | {f'`{caller}`' if caller else ''} |")
    rest = total - sum(s.size_diff for s in sorted(
        stats, key=lambda s: s.size_diff, reverse=True)[:top])
    lines.append(f"| {rest / clients:,.0f} | | (everything else) | |")
    by_package: dict[str, int] = {}
    for stat in stats:
        where = telling_frames(stat.traceback)[0]
        name = where.split("/", 1)[0] if "/" in where else where.split(":", 1)[0]
        by_package[name] = by_package.get(name, 0) + stat.size_diff
    lines += ["", "By the package of the frame that allocated (`asyncio`: called from the",
              "event loop's C code, such as the transport's own objects):", "",
              "| package | bytes/conn |", "|---|---:|"]
    lines += [f"| {name} | {size / clients:,.0f} |" for name, size in sorted(
        by_package.items(), key=lambda item: item[1], reverse=True) if size / clients >= 50]
    if full:
        for stat in sorted(stats, key=lambda s: s.size_diff, reverse=True)[:top]:
            lines += ["", f"{stat.size_diff / clients:,.0f} bytes/conn:",
                      *(f"  {short(frame)}" for frame in reversed(stat.traceback))]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--tracebacks", action="store_true",
                        help="then each row's whole traceback, innermost frame first")
    options = parser.parse_args()
    tracemalloc.start(options.frames)
    lines = uvloop.run(measure(options))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
