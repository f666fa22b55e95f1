"""Multi-node fan-out: what each node of a cluster pays for the others' traffic.

For each mode of --modes (FANOUT_CHANNELS=single: one Redis channel that every node
reads whole; per-room: a node reads only the channels of conversations it has sockets
in) and each layout of --layouts, starts fresh `ecigdis-ws serve` nodes on one Redis
and one database, drives them with one `ecigdis-ws bench --scenario chat` over all of
them, and measures each node over the same window of steady load:

  idle    2 nodes: A has every sender (1,000 clients in conversations of 5, 2,000
          msg/s), B 1,000 idle clients joined to other conversations: B's CPU as % of A's
  local   3 nodes, each conversation's members all on one node (k % 3), 1,500 clients,
          1,500 msg/s: each node's fan-out reads against its share of the traffic
  spread  3 nodes, member j of every conversation (of 6) on node j % 3: CPU per 1,000
          messages and p99, per-room against single

With --change-share / --delete-share the bench edits and deletes messages too, and the
summary has a latency table by kind (send, edit, delete).

Every run must deliver every message to every other member (the bench's own count):
a loss, an error or a failed run makes the exit status 1. The figures are defined
in nodes_report.py. Writes OUT/<layout>-<mode>.json and OUT/summary.md.

    PYTHONPATH=$PWD/src .venv/bin/python benchmarks/nodes.py --out /tmp/nodes
    benchmarks/nodes.py --modes single --layouts idle --duration 5 --idle-clients 200 ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import redis

from ecigdis_ws.bench.changes import add_change_arguments, change_options_from
from ecigdis_ws.cluster.redis_connection import key_base
from ecigdis_ws.settings import SPECS, is_cluster_url, parse_cluster_url

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nodes_report import (  # (this folder's pure half)
    CONNECTIONS,
    LAYOUTS,
    MODES,
    RECEIVED,
    STORED,
    SUBSCRIPTIONS,
    LayoutSpec,
    Sample,
    Sizes,
    bench_args,
    checks,
    compare_spread,
    count_warnings,
    latency_by_kind,
    layout_spec,
    metric_total,
    node_rows,
    summary_markdown,
)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "ecigdis-ws"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NODE_UP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.1
# The bench sends this much longer than the measured window: the window starts when
# the first message is seen stored (up to a poll late), so it ends inside the load.
WINDOW_MARGIN_S = 1.0
# Connecting 2,000 clients and creating their conversations takes seconds; this bounds
# the wait for the first message.
FIRST_MESSAGE_TIMEOUT_S = 300.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


class Node:
    """One `ecigdis-ws serve` process in a session of its own."""

    def __init__(self, name: str, port: int, env: dict[str, str], workdir: Path,
                 run_name: str) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / f"{run_name}-node-{name}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
                env={**env, "SERVER_ID": name}, cwd=workdir, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + NODE_UP_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check_alive()
            with (contextlib.suppress(OSError, ValueError),
                  urllib.request.urlopen(f"{self.url}/health", timeout=1) as response):
                if json.loads(response.read()).get("redis") == "connected":
                    return
            time.sleep(POLL_S)
        raise RuntimeError(f"node {self.name} not healthy in {NODE_UP_TIMEOUT_S:g} s:\n"
                           + self.log.read_text(errors="replace")[-3000:])

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"node {self.name} exited {self.process.returncode}:\n"
                               + self.log.read_text(errors="replace")[-3000:])

    def sample(self) -> Sample:
        cpu = cpu_seconds(self.process.pid)  # before the scrape, which costs CPU too
        text = scrape(self.url)
        return Sample(cpu, metric_total(text, STORED) or 0.0, metric_total(text, RECEIVED),
                      metric_total(text, SUBSCRIPTIONS), metric_total(text, CONNECTIONS))

    def stop(self) -> None:
        stop_process(self.process)

    def warnings(self) -> dict[str, int]:
        """What the node logged at warning or above, counted by event and reason (a
        failed fan-out publish there is a message other nodes' members never got)."""
        return count_warnings(self.log.read_text(errors="replace"))


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM to the process's own group (it was started in a session of its own),
    SIGKILL if it is still there after STOP_TIMEOUT_S."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def base_env(options: argparse.Namespace, mode: str, prefix: str, secret: str,
             workdir: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir),
        "LANG": "C.UTF-8", "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO / "src")),
        "NODE_ENV": "production", "LOG_LEVEL": "warning", "MIGRATE_ON_START": "false",
        "REDIS_URL": options.redis_url, "REDIS_KEY_PREFIX": prefix,
        "DATABASE_URL": options.database_url, "DB_TABLE_PREFIX": options.table_prefix,
        "JWT_SECRET": secret, "CLUSTER_SECRET": secrets.token_urlsafe(32),
        "RATE_LIMIT_MESSAGES": "0", "RATE_LIMIT_EVENTS": "0",
        "MAX_CONNECTIONS_PER_USER": "0", "MAX_UNAUTHENTICATED_PER_IP": "0",
        # global presence would send every connect to every socket of the cluster
        # (N²/2 frames while connecting); contacts keeps it to conversation partners.
        "PRESENCE_SCOPE": "contacts",
        "FANOUT_CHANNELS": mode,
    }
    if any(spec.name == "EVENT_LOOP" for spec in SPECS):
        env["EVENT_LOOP"] = "uvloop"
    return env


@contextlib.contextmanager
def cluster(count: int, env: dict[str, str], workdir: Path,
            run_name: str) -> Iterator[list[Node]]:
    nodes: list[Node] = []
    try:
        for name, port in zip("ABCDEFGH", free_ports(count), strict=False):
            nodes.append(Node(name, port, env, workdir, run_name))
        for node in nodes:
            node.wait_healthy()
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        delete_keys(env["REDIS_URL"], env["REDIS_KEY_PREFIX"])


def delete_keys(url: str, prefix: str) -> None:
    """The run's Redis keys (on a Redis Cluster the prefix is their hash tag)."""
    with contextlib.suppress(redis.RedisError, ValueError):
        client: Any
        if is_cluster_url(url):
            client = redis.RedisCluster(startup_nodes=[
                redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
                for h, p in parse_cluster_url(url).nodes])
        else:
            client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            keys = list(client.scan_iter(match=f"{key_base(prefix, url)}:*", count=500))
            for key in keys:
                client.delete(key)
        finally:
            client.close()


def wait_for_traffic(nodes: Sequence[Node], bench: subprocess.Popen[Any]) -> None:
    first = sum(node.sample().stored for node in nodes)
    deadline = time.monotonic() + FIRST_MESSAGE_TIMEOUT_S
    while sum(node.sample().stored for node in nodes) == first:
        if bench.poll() is not None:
            raise RuntimeError(f"the bench exited {bench.returncode} before sending")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no message stored in {FIRST_MESSAGE_TIMEOUT_S:g} s")
        time.sleep(POLL_S)


def measure(spec: LayoutSpec, mode: str, options: argparse.Namespace, workdir: Path,
            prefix: str) -> dict[str, Any]:
    """One layout in one mode: fresh nodes, the bench, the window, the report."""
    secret = secrets.token_urlsafe(32)
    env = base_env(options, mode, prefix, secret, workdir)
    with cluster(spec.nodes, env, workdir, f"{spec.name}-{mode}") as nodes:
        bench_json = workdir / f"bench-{spec.name}-{mode}.json"
        argv = [str(SCRIPT), "bench", *bench_args(
            spec, [n.url for n in nodes], warmup_s=options.warmup,
            duration_s=options.duration + WINDOW_MARGIN_S, drain_s=options.drain,
            changes=change_options_from(options)),
            "--settle", "0", "--setup", "--no-progress", "--json", str(bench_json)]
        if options.processes:
            argv += ["--processes", str(options.processes)]
        with (workdir / f"bench-{spec.name}-{mode}.log").open("wb") as log:
            bench = subprocess.Popen(argv, env=env, cwd=workdir, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_traffic(nodes, bench)
            time.sleep(options.warmup)
            before = [node.sample() for node in nodes]
            time.sleep(options.duration)
            after = [node.sample() for node in nodes]
            code = bench.wait(options.duration + options.drain + 120)
        finally:
            stop_process(bench)
        for node in nodes:
            node.check_alive()
    if not bench_json.is_file():
        raise RuntimeError(f"the bench exited {code} without a report: see {workdir}")
    report = layout_report(spec, mode, options, before, after,
                           json.loads(bench_json.read_text()), code, argv)
    for row, node in zip(report["nodes"], nodes, strict=True):
        row["log_warnings"] = node.warnings()
    return report


def layout_report(spec: LayoutSpec, mode: str, options: argparse.Namespace,
                  before: list[Sample], after: list[Sample], bench: dict[str, Any],
                  code: int, argv: list[str]) -> dict[str, Any]:
    rows = node_rows(before, after)
    messages = bench.get("messages") or {}
    return {
        "layout": spec.name, "mode": mode,
        # False: these nodes ignore FANOUT_CHANNELS (per-room then behaves as single)
        "fanout_channels_setting_known": any(s.name == "FANOUT_CHANNELS" for s in SPECS),
        "spec": spec.__dict__, "window_s": options.duration, "warmup_s": options.warmup,
        "redis_url": options.redis_url,
        "nodes": rows, "checks": checks(spec, rows),
        "latency_ms": messages.get("latency_ms", {"p50": None, "p99": None}),
        # send, and edit and delete when the bench changed messages (its phase, not the window)
        "latency_by_kind": latency_by_kind(bench),
        "losses": bench.get("losses"), "errors": bench.get("errors", {}).get("total"),
        "ok": code == 0 and bool(bench.get("ok")),
        "bench_exit_code": code, "bench_command": argv, "bench": bench,
    }


def parse(argv: Sequence[str]) -> argparse.Namespace:
    sizes = Sizes()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the window")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--drain", type=float, default=5.0, help="the bench's --drain")
    parser.add_argument("--idle-active-clients", type=int, default=sizes.idle_active_clients)
    parser.add_argument("--idle-rate", type=float, default=sizes.idle_rate)
    parser.add_argument("--idle-clients", type=int, default=sizes.idle_clients)
    parser.add_argument("--idle-group", type=int, default=sizes.idle_group)
    parser.add_argument("--clients", type=int, default=sizes.clients, help="local, spread")
    parser.add_argument("--rate", type=float, default=sizes.rate, help="local, spread")
    parser.add_argument("--local-group", type=int, default=sizes.local_group)
    parser.add_argument("--spread-group", type=int, default=sizes.spread_group)
    parser.add_argument("--processes", type=int, help="the bench's worker processes")
    add_change_arguments(parser)  # (passed on to the bench as they are)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                        help="also redis+cluster://host:port,...")
    parser.add_argument("--database-url", default="mysql://root@127.0.0.1:3306/test")
    parser.add_argument("--table-prefix", default="nb_")
    parser.add_argument("--out", default="/tmp/ecigdis-nodes")
    options = parser.parse_args(argv)
    options.mode_list = [m for m in options.modes.split(",") if m]
    options.layout_list = [layout for layout in options.layouts.split(",") if layout]
    wrong = [x for x in options.mode_list if x not in MODES] + [
        x for x in options.layout_list if x not in LAYOUTS]
    if wrong or not options.mode_list or not options.layout_list:
        parser.error(f"--modes from {MODES}, --layouts from {LAYOUTS}; not {wrong}")
    return options


def migrate(options: argparse.Namespace, workdir: Path) -> None:
    env = base_env(options, "single", "nb-migrate", secrets.token_urlsafe(32), workdir)
    subprocess.run([str(SCRIPT), "migrate"], env=env, cwd=workdir, check=True,
                   capture_output=True, timeout=300)


def run(options: argparse.Namespace) -> int:
    out = Path(options.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="ecigdis-nodes-"))
    migrate(options, workdir)
    sizes = Sizes(options.idle_active_clients, options.idle_rate, options.idle_clients,
                  options.idle_group, options.clients, options.rate, options.local_group,
                  options.spread_group)
    run_id = secrets.token_hex(3)
    reports: list[dict[str, Any]] = []
    failed = False
    for layout in options.layout_list:
        for mode in options.mode_list:
            spec = layout_spec(layout, sizes)
            print(f"{layout} / {mode}: {spec.nodes} nodes ...", file=sys.stderr, flush=True)
            try:
                report = measure(spec, mode, options, workdir, f"nb-{run_id}-{layout}-{mode}")
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                print(f"{layout} / {mode} failed: {exc}", file=sys.stderr)
                failed = True
                continue
            failed |= not report["ok"]
            (out / f"{layout}-{mode}.json").write_text(json.dumps(report, indent=2) + "\n")
            reports.append(report)
    spread = {r["mode"]: r for r in reports if r["layout"] == "spread"}
    comparison = (compare_spread(spread["single"], spread["per-room"])
                  if {"single", "per-room"} <= spread.keys() else None)
    summary = summary_markdown(reports, comparison)
    if reports and not reports[0]["fanout_channels_setting_known"]:
        summary = ("These nodes have no FANOUT_CHANNELS setting: per-room ran as single.\n\n"
                   + summary)
    if comparison is not None:
        (out / "spread-comparison.json").write_text(json.dumps(comparison, indent=2) + "\n")
    (out / "summary.md").write_text(summary)
    print(summary)
    print(f"logs in {workdir}; reports in {out}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: Sequence[str]) -> int:
    options = parse(argv)

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # so that every `finally` stops its processes

    signal.signal(signal.SIGTERM, interrupted)
    try:
        return run(options)
    except KeyboardInterrupt:
        print("interrupted: every node and bench stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
