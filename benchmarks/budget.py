"""Where a chat message's server CPU goes, stage by stage.

Starts this server the way compare.py does (SQLite in a scratch folder, or MariaDB),
drives it with `ecigdis-ws bench --scenario chat` at a fixed rate, and measures in
two windows of the steady state:

1. CPU per message: the server process's CPU seconds (/proc/PID/stat, every thread)
   over the window, divided by the messages it stored meanwhile (its own
   `ecigdis_ws_messages_stored_total`). No profiler runs in this window.
2. Where that CPU goes: py-spy samples every thread that is not idle; each sample is
   put in one stage by stage_of() (budget_stages.py), and a stage's share of the
   samples times the CPU per message is its budget in microseconds.

    benchmarks/budget.py --target ours-sqlite --clients 1000 --rate 2000 --out /tmp/budget
    benchmarks/budget.py --source /tmp/before/src ...      # another checkout's code
    benchmarks/budget.py --stacks /tmp/budget/stacks.txt   # classify a saved profile again
    benchmarks/budget.py --no-profile ...                  # the CPU per message alone

Needs py-spy (`.venv/bin/pip install py-spy`) and ptrace rights over the server (root, or
kernel.yama.ptrace_scope=0).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # (this folder's side-by-side runner: the same servers)
from budget_stages import IDLE, STAGES, stage_of

# Seconds of steady load before the first window: connects are over, caches warm.
SETTLE_S = 3.0
# py-spy's sampling rate: 200/s over 10 s gives 2,000 samples per busy core.
SAMPLE_HZ = 200
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STORED = re.compile(rb"^ecigdis_ws_messages_stored_total (\S+)$", re.M)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def stored(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        match = STORED.search(response.read())
    return float(match.group(1)) if match else 0.0


def wait_for_traffic(url: str, bench: subprocess.Popen[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    first = stored(url)
    while stored(url) == first:
        if bench.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the bench sent nothing: see its output above")
        time.sleep(0.2)


def cpu_window(url: str, pid: int, seconds: float) -> dict[str, float]:
    cpu, count, started = cpu_seconds(pid), stored(url), time.monotonic()
    time.sleep(seconds)
    cpu, count = cpu_seconds(pid) - cpu, stored(url) - count
    wall = time.monotonic() - started
    return {"seconds": round(wall, 2), "cpu_s": round(cpu, 3), "messages": count,
            "messages_per_s": round(count / wall, 1),
            "cpu_us_per_message": round(cpu / count * 1e6, 1) if count else 0.0,
            "cores_busy": round(cpu / wall, 3)}


def profile(pid: int, seconds: float, output: Path) -> None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    subprocess.run([py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                    "--rate", str(SAMPLE_HZ), "--format", "raw", "--native",
                    "--output", str(output)], check=True, capture_output=True)


def classify(stacks: Path) -> Counter[str]:
    shares: Counter[str] = Counter()
    for line in stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            shares[stage_of(stack.split(";"))] += int(count)
    return shares


def budget_table(shares: Counter[str], cpu_us: float | None) -> list[str]:
    busy = {stage: n for stage, n in shares.items() if stage != IDLE}
    total = sum(busy.values()) or 1
    lines = ["| stage | share of samples | µs of CPU per message |", "|---|---|---|"]
    for stage in [*STAGES, "other"]:
        share = busy.get(stage, 0) / total
        if share == 0:
            continue
        us = f"{share * cpu_us:.1f}" if cpu_us is not None else "—"
        lines.append(f"| {stage} | {share * 100:.1f} % | {us} |")
    lines.append(f"| **all** | 100 % ({total:,} busy samples) | "
                 f"{f'{cpu_us:.1f}' if cpu_us is not None else '—'} |")
    return lines


def run(options: argparse.Namespace) -> dict[str, Any]:
    out = Path(options.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="ecigdis-budget-"))
    database = (options.mariadb_url if options.target == "ours-mariadb"
                else f"sqlite:///{scratch / 'budget.db'}")
    if options.target == "ours-mariadb":
        compare.ensure_mariadb_database(database)
    target = compare.Ours(options.target, database, {})
    if options.source:  # the server and its bench run that checkout's code
        os.environ["PYTHONPATH"] = str(Path(options.source).resolve())
    secret = secrets.token_urlsafe(32)
    windows = 1 if options.no_profile else 2
    bench_s = options.window * windows + SETTLE_S + 10  # the windows, with room either side
    with target.running(scratch, secret) as server:
        command = [str(compare.SCRIPT), "bench", server.url, "--scenario", "chat",
                   "--clients", str(options.clients), "--group", "5", "--rate",
                   str(options.rate), "--warmup", "1", "--duration", str(bench_s),
                   "--setup", "--no-progress", "--json", str(out / "bench.json")]
        bench = subprocess.Popen(command, env=server.env, cwd=server.env["HOME"], text=True)
        try:
            wait_for_traffic(server.url, bench, timeout_s=300)
            time.sleep(SETTLE_S)
            cpu = cpu_window(server.url, server.pid, options.window)
            if not options.no_profile:
                profile(server.pid, options.window, out / "stacks.txt")
        finally:
            bench.wait(timeout=bench_s + 300)
    report = json.loads((out / "bench.json").read_text())
    return {"target": options.target, "clients": options.clients, "rate": options.rate,
            "cpu": cpu, "bench_chat": report.get("chat"), "command": command}


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=["ours-sqlite", "ours-mariadb"],
                        default="ours-sqlite")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=2000, help="messages per second in total")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per window")
    parser.add_argument("--mariadb-url", default="mysql://root@127.0.0.1:3306/ecigdis_bench")
    parser.add_argument("--out", default="/tmp/ecigdis-budget")
    parser.add_argument("--source", help="another checkout's src/ to measure (before/after)")
    parser.add_argument("--no-profile", action="store_true",
                        help="the CPU window only: no py-spy, no stages")
    parser.add_argument("--stacks", help="only classify this saved py-spy raw profile")
    parser.add_argument("--cpu-us", type=float, help="with --stacks: CPU µs per message")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    options = parse(argv)
    if options.stacks:
        print("\n".join(budget_table(classify(Path(options.stacks)), options.cpu_us)))
        return 0
    result = run(options)
    out = Path(options.out).resolve()
    shares = Counter() if options.no_profile else classify(out / "stacks.txt")
    result["shares"] = dict(shares)
    (out / "budget.json").write_text(json.dumps(result, indent=2) + "\n")
    cpu = result["cpu"]
    print(f"{options.target}: {options.clients} clients in groups of 5 at {options.rate} msg/s; "
          f"{cpu['messages_per_s']:.0f} msg/s stored in the window, {cpu['cores_busy']:.2f} "
          f"cores busy, {cpu['cpu_us_per_message']:.1f} µs of CPU per message")
    if not options.no_profile:
        print("\n".join(budget_table(shares, cpu["cpu_us_per_message"])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
