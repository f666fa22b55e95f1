"""Run the same `ecigdis-ws bench` scenarios against this server and the Node.js peer.

Started by benchmarks/compare.sh (which raises the open-files limit first). Every
run gets a freshly started server: ours with SQLite in a temporary directory or
MariaDB (database `ecigdis_bench`), or the Node peer copied to /tmp and installed
with npm. Targets alternate within each scenario (ours, node, ours, node, …) so
that drifting noise on the machine hits both. Each bench run is a subprocess whose
exact command line is recorded; its JSON report is kept.

Scenarios (sizes are options):
  chat       ramp at each of --chat-clients (2,000 and 5,000) in conversations of 5:
             coarse steps (--factor) until p99 > 100 ms or a loss, then fine steps
             (--fine-factor) from the last held until one fails: the highest message
             rate held (SQLite, MariaDB and the peer), one row per size
  broadcast  ramp, one conversation of 1,000: deliveries/s at the highest rate held
  connect    5,000 clients connect, authenticate and join: seconds until all joined
             (ours with each PRESENCE_SCOPE the server knows, the peer has global)
  memory     10,000 idle authenticated connections: resident KiB per connection
  reconnect  5,000 clients joined; the server is killed (SIGKILL) and restarted under
             them by benchmarks/restart_server.py; seconds until all are back and
             rejoined (ours with `since`), and the messages they missed

Output: OUT/compare-<date>.json (every report, every command) and OUT/compare-<date>.md
(the tables, ratios, machine, commands and date, ready for BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymysql

from ecigdis_ws.bench.plan import DEFAULT_FINE_FACTOR
from ecigdis_ws.bench.report import machine, markdown_table
from ecigdis_ws.settings import SPECS
from ecigdis_ws.storage.mariadb import MariaDbTarget

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "ecigdis-ws"
PEER_SOURCE = REPO.parent / "shared" / "bench" / "node-reference"
RESTART_SCRIPT = REPO / "benchmarks" / "restart_server.py"
SERVER_UP_TIMEOUT_S = 30
SERVER_STOP_TIMEOUT_S = 30
NPM_INSTALL_TIMEOUT_S = 600
# A bench run that has not finished in this long is stuck: it is killed.
RUN_TIMEOUT_S = 3 * 3600
SETTING_NAMES = {spec.name for spec in SPECS}

# What the server needs to be benchmarked at all (the bench says so too).
BENCH_SETTINGS = {
    "RATE_LIMIT_MESSAGES": "0",
    "RATE_LIMIT_EVENTS": "0",
    "MAX_CONNECTIONS_PER_USER": "0",
    "MAX_UNAUTHENTICATED_PER_IP": "0",
    "LOG_LEVEL": "warning",
    "MIGRATE_ON_START": "true",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def say(text: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the server exited:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {SERVER_UP_TIMEOUT_S} s")


def stop(process: subprocess.Popen[bytes], pidfile: Path) -> None:
    """Stop the server: the one started here, or the one a restart put in its place."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    pid = int(pidfile.read_text().strip()) if pidfile.is_file() else process.pid
    if pid == process.pid:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + SERVER_STOP_TIMEOUT_S
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


def restart_command(pidfile: Path, log: Path, cwd: Path, extra_env: dict[str, str], url: str,
                    argv: list[str]) -> str:
    """The bench's --restart-cmd: SIGKILL the server in `pidfile`, start `argv` again,
    with the bench's environment (which it inherits) plus `extra_env`."""
    return shlex.join([
        sys.executable, str(RESTART_SCRIPT), str(pidfile), "--signal", "KILL", "--log",
        str(log), "--cwd", str(cwd), "--wait-url", url,
        *[f"--env={name}={value}" for name, value in sorted(extra_env.items())], "--", *argv])


# -- the servers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    env: dict[str, str]  # the environment a bench of this server runs with
    target: str  # ecigdis or node
    restart_cmd: str  # kills it and starts it again (the reconnect scenario)


@dataclass
class Ours:
    name: str  # ours-sqlite, ours-mariadb
    database_url: str
    extra: dict[str, str] = field(default_factory=dict)

    def settings(self, workdir: Path, secret: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workdir),
            "LANG": "C.UTF-8",
            "NODE_ENV": "production",
            "JWT_SECRET": secret,
            "DATABASE_URL": self.database_url,
            **BENCH_SETTINGS,
            **self.extra,
        }
        # uvloop when the server has the setting (the lead's choice of loop).
        if "EVENT_LOOP" in SETTING_NAMES:
            env.setdefault("EVENT_LOOP", "uvloop")
        # PYTHONPATH: a checkout measured with another checkout's venv (its own
        # source first) keeps its source in the server too.
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        return {k: v for k, v in env.items() if k in SETTING_NAMES or k in (
            "PATH", "HOME", "LANG", "PYTHONPATH")}

    @contextmanager
    def running(self, workdir: Path, secret: str) -> Iterator[Server]:
        env = self.settings(workdir, secret)
        port = free_port()
        log = workdir / f"{self.name}-{port}.log"
        argv = [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)]
        with log.open("wb") as output:
            process = subprocess.Popen(argv, env=env, cwd=workdir, stdout=output,
                                       stderr=subprocess.STDOUT)
        pidfile = workdir / "server.pid"
        pidfile.write_text(f"{process.pid}\n")
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(f"{url}/health", process, log)
            yield Server(url, process.pid, env, "ecigdis",
                         # the bench runs with the server's own environment
                         restart_command(pidfile, log, workdir, {}, f"{url}/health", argv))
        finally:
            stop(process, pidfile)


@dataclass
class Peer:
    directory: Path
    port: int
    name: str = "node"

    def install(self) -> None:
        """Copy the peer to a scratch folder (shared/ is read-only) and npm install it."""
        if not (self.directory / "node_modules" / "socket.io").is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            for item in ("package.json", "server.js", "README.md"):
                target = self.directory / item
                if target.exists():
                    target.chmod(0o644)
                shutil.copyfile(PEER_SOURCE / item, target)
            npm = shutil.which("npm")
            if npm is None or shutil.which("node") is None:
                raise SystemExit("the Node peer needs node and npm on PATH")
            subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=self.directory, check=True, timeout=NPM_INSTALL_TIMEOUT_S)

    def versions(self) -> dict[str, str]:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True,
                              check=False).stdout.strip()
        manifest = self.directory / "node_modules" / "socket.io" / "package.json"
        socket_io = json.loads(manifest.read_text())["version"] if manifest.is_file() else "?"
        return {"node": node, "socket.io": socket_io}

    @contextmanager
    def running(self, workdir: Path, secret: str) -> Iterator[Server]:
        port = self.port or free_port()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PORT": str(port),
               "HOST": "127.0.0.1"}
        log = workdir / f"node-{port}.log"
        argv = ["node", str(self.directory / "server.js")]
        with log.open("wb") as output:
            process = subprocess.Popen(argv, env=env, cwd=self.directory, stdout=output,
                                       stderr=subprocess.STDOUT)
        pidfile = workdir / "server.pid"
        pidfile.write_text(f"{process.pid}\n")
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(f"{url}/status", process, log)
            yield Server(url, process.pid, bench_env(workdir), "node",
                         restart_command(pidfile, log, self.directory,
                                         {"PORT": env["PORT"], "HOST": env["HOST"]},
                                         f"{url}/status", argv))
        finally:
            stop(process, pidfile)


def bench_env(workdir: Path) -> dict[str, str]:
    """The environment of a bench of the peer (ours runs with its server's own)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir),
           "LANG": "C.UTF-8"}
    # As for our server: a checkout measured with another's venv runs its own bench.
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def ensure_mariadb_database(url: str) -> None:
    target = MariaDbTarget.from_url(url)
    connection = pymysql.connect(host=target.host, port=target.port, user=target.user,
                                 password=target.password, autocommit=True, connect_timeout=5)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{target.database}` "
                       "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    connection.close()


# -- runs -------------------------------------------------------------------------------------


@dataclass
class Run:
    scenario: str
    target: str  # ours-sqlite, ours-mariadb, ours-sqlite-contacts, node
    round: int
    command: list[str]
    clients: int | None = None  # chat: the size of this run (one table row per size)
    report: dict[str, Any] | None = None
    exit_code: int | None = None
    seconds: float = 0.0


def ramp_args(options: argparse.Namespace) -> list[str]:
    return ["--factor", str(options.factor), "--fine-factor", str(options.fine_factor),
            "--step-duration", str(options.step_duration), "--p99-bound-ms", "100",
            "--warmup", "2"]


def bench_args(scenario: str, options: argparse.Namespace, clients: int | None = None
               ) -> list[str]:
    """The bench's options for one run; `clients`: chat's size for this run."""
    common = ["--settle", str(options.settle), "--connect-timeout",
              str(options.connect_timeout), "--no-progress"]
    if scenario == "chat":
        assert clients is not None
        return ["--scenario", "ramp", "--clients", str(clients), "--group", "5",
                "--start", str(options.chat_start), *ramp_args(options), *common]
    if scenario == "broadcast":
        clients = options.broadcast_clients
        return ["--scenario", "ramp", "--clients", str(clients), "--group", str(clients),
                "--start", str(options.broadcast_start), *ramp_args(options), *common]
    if scenario == "connect":
        return ["--scenario", "connect", "--clients", str(options.connect_clients), *common]
    if scenario == "memory":
        return ["--scenario", "connect", "--clients", str(options.memory_clients),
                "--settle", str(options.memory_settle), "--connect-timeout",
                str(options.connect_timeout), "--no-progress"]
    if scenario == "reconnect":
        return ["--scenario", "reconnect", "--clients", str(options.reconnect_clients),
                "--group", "5", "--rate", str(options.reconnect_rate), "--warmup", "2",
                "--reconnect-timeout", str(options.reconnect_timeout), *common]
    raise ValueError(scenario)


def run_bench(server: Server, scenario: str, target: str, round_: int,
              options: argparse.Namespace, out: Path, stamp: str,
              clients: int | None = None) -> Run:
    size = f"-{clients}" if clients is not None else ""
    report = out / f"compare-{stamp}-{scenario}{size}-{target}-{round_}.json"
    command = [str(SCRIPT), "bench", server.url, *bench_args(scenario, options, clients),
               "--target", server.target, "--server-pid", str(server.pid),
               "--json", str(report)]
    if server.target == "ecigdis":
        command.append("--setup")
    if scenario == "reconnect":
        command += ["--restart-cmd", server.restart_cmd]
    run = Run(scenario, target, round_, command, clients)
    say(f"{scenario}{'' if clients is None else f' {clients:,}'} round {round_}: {target}")
    started = time.monotonic()
    done = subprocess.run(command, env=server.env, cwd=server.env["HOME"], timeout=RUN_TIMEOUT_S,
                          capture_output=True, text=True, check=False)
    run.seconds = round(time.monotonic() - started, 1)
    run.exit_code = done.returncode
    sys.stderr.write(done.stdout)
    if done.returncode not in (0, 1):
        sys.stderr.write(done.stderr[-3000:])
    if report.is_file():
        run.report = json.loads(report.read_text())
    return run


# -- figures and tables -----------------------------------------------------------------------


def figure(run: Run) -> float | None:
    """The scenario's headline figure of one run (None: the run has none)."""
    report = run.report
    if report is None:
        return None
    if run.scenario in ("chat", "broadcast"):
        held = report["ramp"]["highest_rate_held"]
        if held is None:
            return None
        if run.scenario == "chat":
            return float(held)
        step = next(s for s in report["ramp"]["steps"] if s["target_rate"] == held)
        return float(step["deliveries_per_s"])
    if run.scenario == "connect":
        connect = report["connect"]
        return float(connect["total_s"]) if connect["failed"] == 0 else None
    if run.scenario == "memory":
        kib = report["memory"]["per_connection_kib"]
        return float(kib) if kib is not None else None
    if run.scenario == "reconnect":
        back = report["reconnect"]["all_back_s"]
        return float(back) if back is not None else None
    return None


HIGHER_IS_BETTER = {"chat": True, "broadcast": True, "connect": False, "memory": False,
                    "reconnect": False}
HEADLINE = {
    "chat": "chat, {clients:,} clients in groups of 5: highest msg/s held "
            "(no loss, p99 ≤ 100 ms)",
    "broadcast": "broadcast, one conversation of {broadcast_clients:,}: deliveries/s at the "
                 "highest rate held",
    "connect": "connect {connect_clients:,} clients (auth + join): seconds until all joined",
    "memory": "resident KiB per idle authenticated connection at {memory_clients:,}",
    "reconnect": "reconnect {reconnect_clients:,} clients after a kill -9 and restart: "
                 "seconds until all rejoined",
}
GOAL = {"chat": "≥ 1.0x the peer (1.5x the mark)", "broadcast": "≥ 0.8x the peer",
        "connect": "≤ the peer's time", "memory": "≤ 20 KiB",
        "reconnect": "all back, 0 missed"}


def best(runs: list[Run]) -> float | None:
    values = [v for v in (figure(r) for r in runs) if v is not None]
    if not values:
        return None
    higher = HIGHER_IS_BETTER[runs[0].scenario]
    return max(values) if higher else min(values)


def fmt(value: float | None, scenario: str) -> str:
    if value is None:
        return "—"
    if scenario in ("connect", "reconnect"):
        return f"{value:.2f} s"
    if scenario == "memory":
        return f"{value:.1f}"
    return f"{value:,.0f}"


def missed_row(runs: list[Run], targets: list[str], ours: int) -> list[str]:
    """Reconnect: the most messages any run of each target missed (0 is the goal)."""
    cells = []
    for target in targets:
        missed = [r.report["reconnect"]["missed"] for r in runs
                  if r.target == target and r.report and r.report.get("reconnect")]
        cells.append(f"{max(missed):,}" if missed else "—")
    return ["reconnect: messages acknowledged but missed by a member (worst run)", *cells,
            *["" for _ in range(ours)], "0"]


def figure_row(scenario: str, runs: list[Run], targets: list[str], ours: list[str],
               options: argparse.Namespace, clients: int | None) -> list[str]:
    """One table row: each target's best figure, ours / the peer's, the goal."""
    values = {t: best([r for r in runs if r.target == t]) for t in targets}
    node = values.get("node")
    ratios = []
    for target in ours:
        value = values.get(target)
        ratios.append(f"{value / node:.2f}x" if value is not None and node else "—")
    return [HEADLINE[scenario].format(**vars(options), clients=clients or 0),
            *[fmt(values.get(t), scenario) for t in targets], *ratios, GOAL[scenario]]


def ramp_detail(ramp: dict[str, Any]) -> str:
    """The step held (coarse or fine) with its latency, and why the ramp stopped."""
    held = ramp["highest_rate_held"]
    step = next((s for s in ramp["steps"] if s["target_rate"] == held), None)
    detail = ""
    if step:
        stage = f" ({step['stage']})" if "stage" in step else ""
        detail = (f"held {held:,.0f} msg/s{stage}: p50 {step['latency_ms']['p50']:.1f} ms, "
                  f"p99 {step['latency_ms']['p99']:.1f} ms; ")
    return detail + f"stopped at {ramp['stopped_because']}; {len(ramp['steps'])} steps"


def markdown(result: dict[str, Any], runs: list[Run], options: argparse.Namespace) -> str:
    m = result["machine"]
    peer = result.get("peer", {})
    peer_text = (f", Node {peer['node']} with socket.io {peer['socket.io']}"
                 if "node" in peer else " (no Node peer in this run)")
    lines = [
        f"# ecigdis-ws vs the Node.js peer — {result['date']}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Linux "
        f"{m['kernel']}, Python {m['python']}{peer_text}. Open files: "
        f"{result['open_files']}. The load "
        "generator runs on the same machine as the server under test, for both.",
        f"Each figure is the best of {options.rounds} run(s) per target, the targets "
        "alternating within a scenario; every run is listed below.",
        "",
    ]
    order = ["ours-sqlite", "ours-mariadb", "ours-sqlite-contacts", "node"]
    targets = sorted({r.target for r in runs},
                     key=lambda t: (order.index(t) if t in order else len(order), t))
    ours = [t for t in targets if t != "node"]
    header = ["scenario", *targets, *[f"{t} / node" for t in ours], "goal"]
    rows = []
    for scenario in result["scenarios"]:
        scenario_runs = [r for r in runs if r.scenario == scenario]
        # One row per chat size; the other scenarios have one size (clients None).
        for size in sorted({r.clients for r in scenario_runs}, key=lambda c: c or 0):
            sized = [r for r in scenario_runs if r.clients == size]
            rows.append(figure_row(scenario, sized, targets, ours, options, size))
        if scenario == "reconnect" and scenario_runs:
            rows.append(missed_row(scenario_runs, targets, len(ours)))
    lines += markdown_table(header, rows)
    lines += ["", "## Every run", ""]
    run_rows = []
    for run in runs:
        report = run.report or {}
        errors = report.get("errors", {}).get("total", "—")
        generator = report.get("generator", {}).get("cpu_percent_busiest_phase", [])
        detail = ""
        if report.get("ramp"):
            detail = ramp_detail(report["ramp"])
        elif report.get("reconnect"):
            storm = report["reconnect"]
            detail = (f"{storm['back']}/{storm['clients']} back "
                      f"({'with' if storm['policy']['since'] else 'without'} since), "
                      f"restart {storm['restart']['seconds']} s, all back "
                      f"{storm['all_back_after_restart_s']} s after it, missed {storm['missed']} "
                      f"(acked before the kill {storm['missed_acked_before_kill']}, after "
                      f"the return {storm['missed_acked_after_return']})")
        elif report.get("connect"):
            c = report["connect"]
            detail = (f"{c['joined']}/{c['clients']} joined in {c['total_s']} s "
                      f"({c['per_s']}/s)")
            if run.scenario == "memory":
                mem = report["memory"]
                detail += f"; {mem['per_connection_kib']} KiB/conn ({mem['source']})"
        scenario = run.scenario if run.clients is None else f"{run.scenario} {run.clients:,}"
        run_rows.append([scenario, run.target, run.round, fmt(figure(run), run.scenario),
                         detail, errors, report.get("losses", "—"),
                         ", ".join(f"{c:.0f} %" for c in generator), f"{run.seconds} s"])
    lines += markdown_table(["scenario", "target", "round", "figure", "detail", "errors",
                             "losses", "generator CPU per worker", "wall"], run_rows)
    lines += ["", "## Commands", "", "```",
              " ".join(sys.argv if sys.argv[0].endswith("compare.sh") else
                       ["benchmarks/compare.sh", *sys.argv[1:]]), "```", "",
              "Each bench run (the server was started fresh for each, with the "
              "environment in the JSON):", "", "```"]
    lines += [shlex.join(run.command) for run in runs]
    lines += ["```", ""]
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------


def sizes(text: str) -> list[int]:
    """`2000,5000` -> [2000, 5000]."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected sizes like 2000,5000") from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: each size must be at least 2")
    return values


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/compare.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs per target of chat, broadcast and connect (memory: 1)")
    parser.add_argument("--scenarios", default="chat,broadcast,connect,memory")
    parser.add_argument("--targets", default="ours-sqlite,ours-mariadb,node",
                        help="MariaDB runs only the chat scenario")
    parser.add_argument("--mariadb-url", default="mysql://root@127.0.0.1:3306/ecigdis_bench")
    parser.add_argument("--node-dir", default="/tmp/node-reference")
    parser.add_argument("--node-port", type=int, default=9100)
    parser.add_argument("--chat-clients", type=sizes, default=[2000, 5000],
                        help="chat sizes, comma-separated (2000,5000): one row each")
    parser.add_argument("--chat-start", type=float, default=1000)
    parser.add_argument("--broadcast-clients", type=int, default=1000)
    parser.add_argument("--broadcast-start", type=float, default=20)
    parser.add_argument("--factor", type=float, default=1.25,
                        help="ramp: the coarse steps' factor, until the first step fails")
    parser.add_argument("--fine-factor", type=float, default=DEFAULT_FINE_FACTOR,
                        help="ramp: then from the last step held by this factor, until one "
                             "fails (0: no fine steps)")
    parser.add_argument("--step-duration", type=float, default=5)
    parser.add_argument("--connect-clients", type=int, default=5000)
    parser.add_argument("--memory-clients", type=int, default=10000)
    parser.add_argument("--settle", type=float, default=2)
    parser.add_argument("--memory-settle", type=float, default=10)
    parser.add_argument("--reconnect-clients", type=int, default=5000)
    parser.add_argument("--reconnect-rate", type=float, default=100,
                        help="msg/s from random members while the server is killed")
    parser.add_argument("--reconnect-timeout", type=float, default=600)
    parser.add_argument("--connect-timeout", type=float, default=600)
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    options = parse(argv)
    # Absolute: each bench runs in its server's folder and writes its --json there.
    out = Path(options.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    scenarios = [s for s in options.scenarios.split(",") if s]
    wanted = [t for t in options.targets.split(",") if t]
    secret = secrets.token_urlsafe(32)
    scratch = Path(tempfile.mkdtemp(prefix="ecigdis-compare-"))
    peer = Peer(Path(options.node_dir), options.node_port)
    if "node" in wanted:
        peer.install()
    if "ours-mariadb" in wanted and "chat" in scenarios:
        ensure_mariadb_database(options.mariadb_url)
    scopes = ["global", "contacts"] if "PRESENCE_SCOPE" in SETTING_NAMES else [None]

    def ours(name: str, **extra: str) -> Ours:
        database = (options.mariadb_url if "mariadb" in name
                    else f"sqlite:///{scratch / (name + '.db')}")
        return Ours(name, database, dict(extra))

    def targets_for(scenario: str) -> list[Ours | Peer]:
        chosen: list[Ours | Peer] = []
        if "ours-sqlite" in wanted:
            if scenario == "connect" and scopes != [None]:
                chosen += [ours("ours-sqlite" + ("" if s == "global" else f"-{s}"),
                                PRESENCE_SCOPE=str(s)) for s in scopes]
            else:
                chosen.append(ours("ours-sqlite"))
        if "ours-mariadb" in wanted and scenario == "chat":
            chosen.append(ours("ours-mariadb"))
        if "node" in wanted:
            chosen.append(peer)
        # ours, node, ours, …: the peer goes between ours where there are several.
        if len(chosen) > 2 and isinstance(chosen[-1], Peer):
            chosen.insert(1, chosen.pop())
        return chosen

    runs: list[Run] = []
    for scenario in scenarios:
        rounds = 1 if scenario == "memory" else options.rounds
        # Chat once per size, every target within a size before the next size.
        chat_sizes: list[int | None] = (
            list(options.chat_clients) if scenario == "chat" else [None])
        for clients in chat_sizes:
            size = "" if clients is None else f"-{clients}"
            for round_ in range(1, rounds + 1):
                for target in targets_for(scenario):
                    workdir = scratch / f"{scenario}{size}-{target.name}-{round_}"
                    workdir.mkdir()
                    with target.running(workdir, secret) as server:
                        runs.append(run_bench(server, scenario, target.name, round_,
                                              options, out, stamp, clients))
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "peer": peer.versions() if "node" in wanted else {},
        "open_files": subprocess.run(["sh", "-c", "ulimit -n"], capture_output=True,
                                     text=True, check=False).stdout.strip(),
        "scenarios": scenarios,
        "options": vars(options),
        "command": ["benchmarks/compare.sh", *argv],
        "runs": [vars(run) for run in runs],
    }
    (out / f"compare-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"compare-{stamp}.md").write_text(markdown(result, runs, options))
    say(f"wrote {out / f'compare-{stamp}.md'} and .json")
    print((out / f"compare-{stamp}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
