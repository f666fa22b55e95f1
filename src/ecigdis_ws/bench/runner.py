"""The parent process: starts the workers, drives the scenario, merges what they report.

The stages it drives are stages.py's, over the worker processes of worker_pool.py;
the run-wide sections of the report are run_totals.py's.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict
from typing import Any, TextIO

from ecigdis_ws import __version__
from ecigdis_ws.bench.memory import resident_bytes
from ecigdis_ws.bench.plan import BenchError, BenchOptions, client_specs, split
from ecigdis_ws.bench.progress import Progress
from ecigdis_ws.bench.report import machine, now_iso
from ecigdis_ws.bench.run_totals import error_counts, event_counts, generator_load, memory_figure
from ecigdis_ws.bench.stages import Run
from ecigdis_ws.bench.storm import reconnect_storm
from ecigdis_ws.bench.wire import websocket_url
from ecigdis_ws.bench.worker import WorkerPlan
from ecigdis_ws.bench.worker_pool import WorkerPool
from ecigdis_ws.clock import SystemClock
from ecigdis_ws.services.auth import mint_token
from ecigdis_ws.settings import Settings

__all__ = ["BenchError", "run_bench"]

# What the bench needs from the server under test (said before every run).
EXPECTED_SETTINGS = {
    "RATE_LIMIT_MESSAGES": "0",
    "RATE_LIMIT_EVENTS": "0",
    "MAX_CONNECTIONS_PER_USER": "0",
    "MAX_UNAUTHENTICATED_PER_IP": "0",
}
EXPECTED_SETTINGS_WHY = (
    "rate limits would throttle the load (each bench user sends far more than a person); "
    "each client is its own user, authenticated in the handshake, so the connection caps "
    "are not reached, but 0 rules them out"
)



def _auth(options: BenchOptions, settings: Settings | None, user_id: int) -> str:
    if options.target == "node":
        return str(user_id)  # the Node peer takes the token as the user id
    assert settings is not None
    return mint_token(settings, SystemClock(), user_id, f"bench{user_id}", options.token_ttl_s)


def _plans(options: BenchOptions, settings: Settings | None) -> list[WorkerPlan]:
    specs = client_specs(options)
    parts = options.process_count
    per_worker_concurrency = max(1, math.ceil(options.concurrency / parts))
    urls = tuple(websocket_url(url) for url in options.node_urls)
    return [
        WorkerPlan(
            index=index,
            ws_url=urls[0],
            ws_urls=urls,
            clients=[(s.index, _auth(options, settings, s.user_id), s.group, s.conversation_id,
                      s.node, s.idle) for s in part],
            concurrency=per_worker_concurrency,
            connect_timeout_s=options.connect_timeout_s,
            run_id=options.run_id,
            user_base=options.user_base,
            group_size=options.group_size,
            reconnect=options.reconnect if options.scenario == "reconnect" else None,
            changes=options.changes,
        )
        for index, part in enumerate(split(specs, parts))
    ]


def parameters(options: BenchOptions) -> dict[str, Any]:
    return {
        "url": options.url,
        "placement": options.placement,
        "idle_clients": options.idle_clients,
        "idle_url": options.idle_url,
        "scenario": options.scenario,
        "target": options.target,
        "clients": options.client_count,
        "group": options.group_size,
        "conversations": options.group_count,
        "rate": options.message_rate,
        "duration_s": options.duration_s,
        "warmup_s": options.warmup_s,
        "drain_s": options.drain_s,
        "settle_s": options.settle_s,
        "concurrency": options.concurrency,
        "connect_timeout_s": options.connect_timeout_s,
        "processes": options.process_count,
        "user_base": options.user_base,
        "conversation_base": options.conversation_base,
        "server_pid": options.server_pid,
        "ramp": asdict(options.ramp),
        "restart_cmd": options.restart_cmd,
        "reconnect": asdict(options.reconnect),
        "changes": asdict(options.changes),
        "run_id": options.run_id,
    }


def _checked_settings(options: BenchOptions, settings: Settings | None) -> Settings | None:
    if options.target == "node":
        return None
    if settings is None:
        raise BenchError("--target ecigdis needs the server's settings (its JWT_SECRET)")
    return settings


def expected_settings_note(options: BenchOptions) -> str:
    if options.target == "node":
        return "target node: the peer has no auth, rate limits or membership"
    settings = " ".join(f"{k}={v}" for k, v in EXPECTED_SETTINGS.items())
    return f"expects the server under test to run with {settings}: {EXPECTED_SETTINGS_WHY}"


async def run_bench(
    options: BenchOptions,
    settings: Settings | None = None,
    stderr: TextIO | None = None,
) -> dict[str, Any]:
    """Run one scenario; every figure and parameter, as the JSON report holds them."""
    problems = options.check()
    if problems:
        raise BenchError("; ".join(problems))
    settings = _checked_settings(options, settings)
    err = stderr if stderr is not None else sys.stderr
    progress = Progress(err, options.progress)
    if options.progress is not False:
        err.write(expected_settings_note(options) + "\n")
    plans = _plans(options, settings)
    report: dict[str, Any] = {
        "tool": "ecigdis-ws bench",
        "version": __version__,
        "date": now_iso(),
        "machine": machine(),
        "parameters": parameters(options),
        "server_settings_expected": {} if options.target == "node" else EXPECTED_SETTINGS,
    }
    async with WorkerPool(plans, progress) as pool:
        run = Run(options, pool, progress)
        # With several URLs, the first one's memory (a figure per node is another tool's).
        before = await resident_bytes(options.urls[0], options.server_pid)
        report["connect"] = await run.connect()
        progress.set_stage("settling", seconds=options.settle_s)
        await pool.pump(options.settle_s)
        after = await resident_bytes(options.urls[0], options.server_pid)
        report["memory"] = memory_figure(before, after, report["connect"]["connected"])
        if options.scenario in ("chat", "broadcast"):
            rate = options.message_rate
            steps = [(rate, options.warmup_s)] if options.warmup_s > 0 else []
            phases = await run.send_phases([*steps, (rate, options.duration_s)],
                                           "sending")
            report["messages"] = phases[-1]
            report["warmup"] = phases[0] if len(phases) > 1 else None
        elif options.scenario == "ramp":
            report["ramp"] = await run.ramp()
        elif options.scenario == "reconnect":
            report["reconnect"] = await reconnect_storm(run)
        progress.set_stage("closing")
        pool.send(("close",))
        totals = await pool.gather("closed")
    progress.done()
    report["errors"] = error_counts(report["connect"], run.phase_reports, totals)
    # A change acknowledged ok and not heard by every other member is lost as well.
    report["losses"] = sum(p["losses"] + p.get("change_losses", 0) for p in run.phase_reports)
    report["events"] = event_counts(totals)
    if options.changes.active:
        report["events"]["unmatched_change_receipts"] = run.ledger.unmatched
        report["events"]["foreign_change_receipts"] = run.ledger.foreign
    report["generator"] = generator_load(run.worker_cpu, options.process_count)
    report["ok"] = not report["errors"]["total"] and (
        not report["losses"] or options.scenario == "ramp")
    if options.scenario == "ramp":
        report["ok"] = report["errors"]["rate_limited"] == 0 and bool(
            report["ramp"]["highest_rate_held"])
    if options.scenario == "reconnect":
        storm = report["reconnect"]
        report["losses"] = storm["missed"]  # the kill's phase too
        report["ok"] = (not report["errors"]["total"] and storm["restart"]["exit_code"] == 0
                        and storm["not_back"] == 0 and storm["missed"] == 0)
    return report

