"""The stages of a run the parent drives: connect, send phases, ramp steps.

Phases: every batch of messages belongs to a numbered phase (0 is the warm-up). The
workers send, the parent waits until every message of the phase is acknowledged and
every expected delivery arrived (or --drain runs out), then collects the raw samples
and counts losses message by message: a message acknowledged `ok` must reach every
other member of its group that joined; anything short of that is a loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from ecigdis_ws.bench.changes import ChangeLedger
from ecigdis_ws.bench.plan import BenchOptions, RampClimb
from ecigdis_ws.bench.progress import Progress
from ecigdis_ws.bench.report import add_counts, percentiles
from ecigdis_ws.bench.worker_pool import COMMAND_TIMEOUT_S, WorkerPool

# How often the drain checks whether everything arrived.
DRAIN_POLL_S = 0.05
# A ramp step must send at least this share of its target rate, or the generator (or
# TCP back-pressure from the server) held it back and the step proves nothing.
MIN_SEND_SHARE = 0.95


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
        # Edits and deletions (changes.py): sent over the run, and what receivers heard
        # that is not yet matched with its change.
        self.changes_sent = 0
        self.ledger = ChangeLedger()

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
            self.changes_sent += sum(reply.get("changes_sent", 0) for reply in replies)
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
        ack was in, so the expected deliveries counted with them are complete too.
        Edits and deletions likewise, over the whole run (a receiver cannot tell a
        deletion's phase): all of them answered, and heard as often as expected."""
        self.progress.set_stage("draining", seconds=self.options.drain_s)
        deadline = time.monotonic() + self.options.drain_s
        while time.monotonic() < deadline:
            await self.pool.pump(DRAIN_POLL_S)
            _, answered, expected, received = self.pool.phase_state(phases)
            _, changes_answered, changes_expected, changes_heard = self.pool.change_state()
            if (answered >= sent and received >= expected
                    and changes_answered >= self.changes_sent
                    and changes_heard >= changes_expected):
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
        for reply in replies:
            self.ledger.add(reply.get("change_receipts"))
        if self.options.changes.active:
            changes = self.ledger.merge(replies, self.joined_per_group)
            phase["changes"] = changes
            phase["change_losses"] = sum(kind["losses"] for kind in changes.values())
            phase["errors"] += sum(kind["errors"] for kind in changes.values())
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
