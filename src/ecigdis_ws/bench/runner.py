"""The parent process: starts the workers, drives the scenario, merges what they report.

Phases: every batch of messages belongs to a numbered phase (0 is the warm-up). The
workers send, the parent waits until every message of the phase is acknowledged and
every expected delivery arrived (or --drain runs out), then collects the raw samples
and counts losses message by message: a message acknowledged `ok` must reach every
other member of its group that joined; anything short of that is a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TextIO

from ecigdis_ws import __version__
from ecigdis_ws.bench.memory import Reading, resident_bytes
from ecigdis_ws.bench.plan import BenchError, BenchOptions, RampClimb, client_specs, split
from ecigdis_ws.bench.report import add_counts, machine, now_iso, percentiles
from ecigdis_ws.bench.storm import reconnect_storm
from ecigdis_ws.bench.wire import websocket_url
from ecigdis_ws.bench.worker import WorkerPlan, worker_main
from ecigdis_ws.clock import SystemClock
from ecigdis_ws.services.auth import mint_token
from ecigdis_ws.settings import Settings

# A worker process that has not said "ready" in this long failed to start.
WORKER_START_TIMEOUT_S = 60.0
# A reply to a command that does no network work (groups, collect, close) comes at once;
# this only guards against a wedged worker.
COMMAND_TIMEOUT_S = 120.0
# How often the drain checks whether everything arrived.
DRAIN_POLL_S = 0.05
# A ramp step must send at least this share of its target rate, or the generator (or
# TCP back-pressure from the server) held it back and the step proves nothing.
MIN_SEND_SHARE = 0.95
# A worker busier than this may have slowed the run (its replies queue up behind its
# own work and latencies grow): said in the report. --processes spreads the load.
CPU_WARNING_PERCENT = 80.0

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


class Progress:
    """A bar redrawn in place on a terminal; elsewhere a plain line every few seconds."""

    LINE_EVERY_S = 5.0

    def __init__(self, stream: TextIO, enabled: bool | None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if enabled is None else enabled and stream.isatty()
        self.quiet = enabled is False
        self.stage = ""
        self.started = time.monotonic()
        self.stage_started = self.started
        self.stage_seconds: float | None = None  # the stage's expected length
        self.stage_clients: int | None = None  # or the clients it connects
        self.last_line = 0.0

    def set_stage(self, stage: str, seconds: float | None = None,
                  clients: int | None = None) -> None:
        self.stage = stage
        self.stage_started = time.monotonic()
        self.stage_seconds = seconds
        self.stage_clients = clients

    def fraction(self, totals: Mapping[str, Any]) -> float:
        if self.stage_clients:
            return float(totals["joined"] + totals["connect_failed"]) / self.stage_clients
        if self.stage_seconds:
            return (time.monotonic() - self.stage_started) / self.stage_seconds
        return 0.0

    def show(self, totals: Mapping[str, Any]) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        text = (f"{self.stage:<22} {now - self.started:6.1f}s  joined {totals['joined']:,}  "
                f"sent {totals['sent']:,}  acked {totals['acked']:,}  "
                f"delivered {totals['received']:,}  errors {totals['errors']:,}")
        if totals["rate_limited"]:
            text += f"  RATE_LIMITED {totals['rate_limited']:,}!"
        if self.tty:
            width = 20
            filled = int(width * min(1.0, self.fraction(totals)))
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r[{bar}] {text}\x1b[K")
            self.stream.flush()
        elif now - self.last_line >= self.LINE_EVERY_S:
            self.last_line = now
            self.stream.write(text + "\n")
            self.stream.flush()

    def done(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()


class WorkerPool:
    """Worker processes, each with a pipe; replies are read by one thread per pipe."""

    def __init__(self, plans: list[WorkerPlan], progress: Progress) -> None:
        self.plans = plans
        self.progress = progress
        self.processes: list[BaseProcess] = []
        self.pipes: list[Connection] = []
        self.replies: asyncio.Queue[tuple[str, int, dict[str, Any]]] = asyncio.Queue()
        self.closed: set[int] = set()  # workers that said "closed" (their pipe then ends)
        self.latest: dict[int, dict[str, Any]] = {}
        self.stash: list[tuple[str, int, dict[str, Any]]] = []

    async def __aenter__(self) -> WorkerPool:
        context = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        for plan in self.plans:
            parent, child = context.Pipe()
            process = context.Process(target=worker_main, args=(plan, child),
                                      name=f"bench-worker-{plan.index}", daemon=True)
            process.start()
            child.close()
            self.processes.append(process)
            self.pipes.append(parent)
            threading.Thread(target=self._read, args=(plan.index, parent, loop),
                             daemon=True).start()
        await self.gather("ready", timeout_s=WORKER_START_TIMEOUT_S)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("close",))
        deadline = time.monotonic() + 30
        for process in self.processes:
            await asyncio.to_thread(process.join, max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        for pipe in self.pipes:
            pipe.close()

    def _read(self, index: int, pipe: Connection, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                reply = pipe.recv()
            except (EOFError, OSError) as exc:
                reply = ("ended", index, {"why": repr(exc)})
            try:
                loop.call_soon_threadsafe(self.replies.put_nowait, reply)
            except RuntimeError:  # the loop is closed: the run is over
                return
            if reply[0] == "ended":
                return

    def send(self, command: tuple[Any, ...]) -> None:
        for pipe in self.pipes:
            pipe.send(command)

    def totals(self) -> dict[str, Any]:
        totals = {"connected": 0, "joined": 0, "connect_failed": 0, "errors": 0,
                  "rate_limited": 0, "sent": 0, "acked": 0, "received": 0}
        for counters in self.latest.values():
            for key in ("connected", "joined", "connect_failed", "errors", "rate_limited"):
                totals[key] += counters[key]
            for sent, acked, _failed, _expected, received in counters["phases"].values():
                totals["sent"] += sent
                totals["acked"] += acked
                totals["received"] += received
        return totals

    def phase_state(self, phases: Iterable[int]) -> tuple[int, int, int, int]:
        """(sent, answered, expected, received) of these phases over every worker."""
        sent = answered = expected = received = 0
        wanted = set(phases)
        for counters in self.latest.values():
            for phase, (s, a, f, e, r) in counters["phases"].items():
                if phase in wanted:
                    sent += s
                    answered += a + f
                    expected += e
                    received += r
        return sent, answered, expected, received

    def _handle(self, reply: tuple[str, int, dict[str, Any]]) -> tuple[
            str, int, dict[str, Any]]:
        kind, index, payload = reply
        if kind == "ended" and index not in self.closed:
            process = self.processes[index]
            process.join(1)  # to say how it ended, when it did
            raise BenchError(f"worker {index} ended unexpectedly ({payload['why']}, exit "
                             f"code {process.exitcode})")
        if kind == "failed":
            raise BenchError(f"worker {index} failed:\n{payload['traceback']}")
        if kind == "closed":
            self.closed.add(index)
        if kind == "progress":
            self.latest[index] = payload
            self.progress.show(self.totals())
        return reply

    async def gather(self, kind: str, timeout_s: float = COMMAND_TIMEOUT_S) -> list[
            dict[str, Any]]:
        """One `kind` reply from every worker, in worker order."""
        got: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while len(got) < len(self.pipes):
            if self.stash:
                reply = self.stash.pop(0)
            else:
                try:
                    raw = await asyncio.wait_for(self.replies.get(),
                                                 max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    raise BenchError(f"no {kind!r} from every worker in {timeout_s:.0f} s"
                                     ) from None
                reply = self._handle(raw)
            reply_kind, index, payload = reply
            if reply_kind == kind:
                got[index] = payload
            elif reply_kind not in ("progress", "ended"):
                raise BenchError(f"worker {index} answered {reply_kind!r}, expected {kind!r}")
        return [got[i] for i in range(len(self.pipes))]

    async def pump(self, seconds: float) -> None:
        """Keep reading progress for `seconds`; other replies wait for the next gather."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(self.replies.get(), left)
            except TimeoutError:
                return
            reply = self._handle(raw)
            if reply[0] not in ("progress", "ended"):
                self.stash.append(reply)


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
        "run_id": options.run_id,
    }


class Run:
    """One bench run: the pool, the figures gathered so far."""

    def __init__(self, options: BenchOptions, pool: WorkerPool, progress: Progress) -> None:
        self.options = options
        self.pool = pool
        self.progress = progress
        self.joined_per_group: dict[int, int] = {}
        self.next_phase = 0
        self.phase_reports: list[dict[str, Any]] = []
        self.worker_cpu: dict[int, list[float]] = {}

    async def connect(self) -> dict[str, Any]:
        self.progress.set_stage("connecting", clients=self.options.client_count)
        self.pool.send(("connect",))
        # Each of a worker's connection slots may wait out the timeout once per client.
        waves = math.ceil(max(len(p.clients) for p in self.pool.plans)
                          / self.pool.plans[0].concurrency)
        replies = await self.pool.gather(
            "connected", timeout_s=waves * self.options.connect_timeout_s + COMMAND_TIMEOUT_S)
        for reply in replies:
            for group, joined in reply["joined_groups"].items():
                self.joined_per_group[group] = self.joined_per_group.get(group, 0) + joined
        self.pool.send(("groups", self.joined_per_group))
        await self.pool.gather("groups")
        started = min(r["started_ns"] for r in replies)
        ended = max(r["ended_ns"] for r in replies)
        total_s = (ended - started) / 1e9
        connect_failures: dict[str, int] = {}
        join_failures: dict[str, int] = {}
        durations: list[float] = []
        for index, reply in enumerate(replies):
            add_counts(connect_failures, reply["connect_failures"])
            add_counts(join_failures, reply["join_failures"])
            durations.extend(reply["durations_ms"])
            if total_s > 0:
                self.worker_cpu.setdefault(index, []).append(100 * reply["cpu_s"] / total_s)
        joined = sum(r["joined"] for r in replies)
        return {
            "clients": self.options.client_count,
            "connected": sum(r["connected"] for r in replies),
            "joined": joined,
            "failed": self.options.client_count - joined,
            "connect_failures": connect_failures,
            "join_failures": join_failures,
            # Microseconds: a fast run takes tens of milliseconds, and a total cut to
            # whole milliseconds would disagree with the rate by over 1 %.
            "total_s": round(total_s, 6),
            "per_s": round(joined / total_s, 1) if total_s > 0 else None,
            "latency_ms": percentiles(durations),
        }

    async def send_phases(self, steps: list[tuple[float, float]], stage: str) -> list[
            dict[str, Any]]:
        """Send each (rate, seconds) step as its own phase, back to back; drain; collect."""
        phases = []
        for rate, seconds in steps:
            phase = self.next_phase
            self.next_phase += 1
            phases.append(phase)
            self.pool.send(("send", phase, rate / len(self.pool.pipes), seconds))
        self.progress.set_stage(stage, seconds=sum(s for _, s in steps))
        sent = 0
        for _ in phases:
            replies = await self.pool.gather("sent", timeout_s=COMMAND_TIMEOUT_S + sum(
                s for _, s in steps))
            sent += sum(reply["sent"] for reply in replies)
        await self.drain(phases, sent)
        merged = []
        for phase in phases:
            self.pool.send(("collect", phase))
            merged.append(self.merge(await self.pool.gather("phase")))
        return merged

    async def drain(self, phases: list[int], sent: int) -> None:
        """Until all `sent` messages are answered and every expected delivery arrived,
        or --drain runs out (what is missing then is lost).

        The workers' counters may be a progress interval old, but they only grow:
        once the answers counted reach `sent` (the workers' own final count), every
        ack was in, so the expected deliveries counted with them are complete too."""
        self.progress.set_stage("draining", seconds=self.options.drain_s)
        deadline = time.monotonic() + self.options.drain_s
        while time.monotonic() < deadline:
            await self.pool.pump(DRAIN_POLL_S)
            _, answered, expected, received = self.pool.phase_state(phases)
            if answered >= sent and received >= expected:
                return

    def merge(self, replies: list[dict[str, Any]]) -> dict[str, Any]:
        receipts: dict[int, int] = {}
        latencies: list[float] = []
        ack_latencies: list[float] = []
        failed: dict[str, int] = {}
        for reply in replies:
            for key, count in reply["receipts"].items():
                receipts[key] = receipts.get(key, 0) + count
            latencies.extend(reply["latencies_ms"])
            ack_latencies.extend(reply["ack_latencies_ms"])
            add_counts(failed, reply["failed"])
        expected = losses = duplicates = 0
        acked_keys: set[int] = set()
        for reply in replies:
            for key, group in zip(reply["acked_keys"], reply["acked_groups"], strict=True):
                want = max(0, self.joined_per_group.get(group, 0) - 1)
                got = receipts.get(key, 0)
                expected += want
                losses += max(0, want - got)
                duplicates += max(0, got - want)
                acked_keys.add(key)
        unacked_deliveries = sum(n for key, n in receipts.items() if key not in acked_keys)
        started = min((r["send_started_ns"] for r in replies if r["sent"]), default=0)
        ended = max((r["send_ended_ns"] for r in replies if r["sent"]), default=0)
        window_s = max((ended - started) / 1e9, 1e-9)
        sent = sum(r["sent"] for r in replies)
        acked = sum(r["acked"] for r in replies)
        deliveries = sum(receipts.values())
        if sent:
            for index, reply in enumerate(replies):
                self.worker_cpu.setdefault(index, []).append(100 * reply["cpu_s"] / window_s)
        phase = {
            "target_rate": round(sum(r["target_rate"] for r in replies), 3),
            "send_window_s": round(window_s, 3),
            "sent": sent,
            "send_rate": round(sent / window_s, 1) if sent else 0.0,
            "acked": acked,
            "messages_per_s": round(acked / window_s, 1) if sent else 0.0,
            "ack_failures": failed,
            "send_errors": sum(r["send_errors"] for r in replies),
            "ack_timeouts": sum(r["unacked"] for r in replies),
            "expected": expected,
            "deliveries": deliveries,
            "deliveries_per_s": round(deliveries / window_s, 1) if sent else 0.0,
            "losses": losses,
            "duplicates": duplicates,
            "deliveries_of_unacked": unacked_deliveries,
            "latency_ms": percentiles(latencies),
            "ack_latency_ms": percentiles(ack_latencies),
        }
        phase["errors"] = (sum(failed.values()) + phase["send_errors"]
                           + phase["ack_timeouts"])
        self.phase_reports.append(phase)
        return phase

    async def ramp(self) -> dict[str, Any]:
        """Coarse steps until one fails, then fine steps from the last one held
        (RampClimb decides); every step is a phase of its own, drained before the next."""
        options = self.options
        climb = RampClimb(options.ramp)
        steps: list[dict[str, Any]] = []
        if options.warmup_s > 0 and climb.coarse:
            await self.send_phases([(climb.coarse[0], options.warmup_s)], "warm-up")
        while (planned := climb.next_step()) is not None:
            rate = planned.rate
            rest = options.ramp.rest_s if steps and not steps[-1]["held"] else 0.0
            if rest > 0:
                self.progress.set_stage("resting", seconds=rest)
                await self.pool.pump(rest)
            (step,) = await self.send_phases([(rate, options.ramp.step_duration_s)],
                                             f"ramp {rate:,.0f}/s ({planned.stage})")
            verdict = self._verdict(step, rate)
            step["stage"] = planned.stage
            step["rest_before_s"] = rest
            step["held"] = not verdict
            step["verdict"] = verdict or "held"
            steps.append(step)
            climb.record(not verdict, verdict)
        return {"steps": steps, "highest_rate_held": climb.held,
                "stopped_because": climb.stopped_because}

    def _verdict(self, step: Mapping[str, Any], rate: float) -> str:
        """Why a ramp step did not hold ("" when it held)."""
        p99 = step["latency_ms"]["p99"]
        bound = self.options.ramp.p99_bound_ms
        if step["losses"]:
            return f"{step['losses']} lost"
        if step["errors"]:
            return f"{step['errors']} errors"
        if p99 is not None and p99 > bound:
            return f"p99 {p99:.0f} ms > {bound:g} ms"
        if step["send_rate"] < MIN_SEND_SHARE * rate:
            return (f"sent only {step['send_rate']:,.0f}/s: the generator or the "
                    "server's back-pressure held it back")
        return ""


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
        report["memory"] = _memory(before, after, report["connect"]["connected"])
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
    report["errors"] = _errors(report["connect"], run.phase_reports, totals)
    report["losses"] = sum(p["losses"] for p in run.phase_reports)
    report["events"] = _events(totals)
    report["generator"] = _generator(run, options)
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


def _memory(before: Reading, after: Reading, connections: int) -> dict[str, Any]:
    figure: dict[str, Any] = {
        "before_bytes": before.bytes,
        "after_bytes": after.bytes,
        "connections": connections,
        "source": after.source if after.bytes is not None else before.source,
        "per_connection_bytes": None,
        "per_connection_kib": None,
    }
    if before.bytes is not None and after.bytes is not None and connections:
        per = (after.bytes - before.bytes) / connections
        figure["per_connection_bytes"] = round(per)
        figure["per_connection_kib"] = round(per / 1024, 2)
    return figure


def _errors(connect: Mapping[str, Any], phases: list[dict[str, Any]],
            totals: list[dict[str, Any]]) -> dict[str, Any]:
    ack_failures: dict[str, int] = {}
    error_events: dict[str, int] = {}
    for phase in phases:
        add_counts(ack_failures, phase["ack_failures"])
    for worker in totals:
        add_counts(error_events, worker["error_events"])
    ack_timeouts = sum(p["ack_timeouts"] for p in phases)
    send_errors = sum(p["send_errors"] for p in phases)
    disconnects = sum(w["disconnects"] for w in totals)
    unanswered = sum(w["unanswered_errors"] for w in totals)
    connect_failures = dict(connect["connect_failures"])
    join_failures = dict(connect["join_failures"])
    rate_limited = sum(
        counts.get("RATE_LIMITED", 0)
        for counts in (ack_failures, error_events, connect_failures, join_failures))
    total = (sum(connect_failures.values()) + sum(join_failures.values())
             + sum(ack_failures.values()) + ack_timeouts + send_errors + disconnects
             + unanswered)
    return {
        "total": total,
        "connect_failures": connect_failures,
        "join_failures": join_failures,
        "ack_failures": ack_failures,
        "ack_timeouts": ack_timeouts,
        "send_errors": send_errors,
        "disconnects": disconnects,
        "error_events": error_events,
        "unanswered_error_events": unanswered,
        "rate_limited": rate_limited,
    }


def _events(totals: list[dict[str, Any]]) -> dict[str, Any]:
    events: dict[str, int] = {}
    for worker in totals:
        add_counts(events, worker["events"])
    return {
        "other_events": events,
        "foreign_messages": sum(w["foreign_messages"] for w in totals),
        "late_deliveries": sum(w["late_deliveries"] for w in totals),
        # Messages written while the server was not reading fast enough (TCP back-pressure).
        "writes_while_paused": sum(w["writes_while_paused"] for w in totals),
    }


def _generator(run: Run, options: BenchOptions) -> dict[str, Any]:
    busiest = [round(max(cpu), 1) for _, cpu in sorted(run.worker_cpu.items())]
    figure: dict[str, Any] = {
        "processes": options.process_count,
        "cpu_percent_busiest_phase": busiest,
        "cpu_percent_by_phase": {str(w): [round(c, 1) for c in cpu]
                                 for w, cpu in sorted(run.worker_cpu.items())},
        "pid": os.getpid(),
    }
    if busiest and max(busiest) > CPU_WARNING_PERCENT:
        figure["warning"] = (f"a worker was at {max(busiest):.0f} % of a core: the generator "
                             "may have been the bottleneck; try --processes")
    return figure
