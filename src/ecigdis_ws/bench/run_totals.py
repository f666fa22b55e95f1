"""The report's run-wide sections, summed over every phase and worker: memory per
connection, errors, other events, and the load generator's own CPU."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ecigdis_ws.bench.memory import Reading
from ecigdis_ws.bench.report import add_counts

# A worker busier than this may have slowed the run (its replies queue up behind its
# own work and latencies grow): said in the report. --processes spreads the load.
CPU_WARNING_PERCENT = 80.0


def memory_figure(before: Reading, after: Reading, connections: int) -> dict[str, Any]:
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


def error_counts(connect: Mapping[str, Any], phases: list[dict[str, Any]],
            totals: list[dict[str, Any]]) -> dict[str, Any]:
    ack_failures: dict[str, int] = {}
    error_events: dict[str, int] = {}
    change_failures: dict[str, int] = {}  # edits' and deletions' (changes.py)
    change_timeouts = change_send_errors = 0
    for phase in phases:
        add_counts(ack_failures, phase["ack_failures"])
        for kind in phase.get("changes", {}).values():
            add_counts(change_failures, kind["ack_failures"])
            change_timeouts += kind["ack_timeouts"]
            change_send_errors += kind["send_errors"]
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
        for counts in (ack_failures, error_events, connect_failures, join_failures,
                       change_failures))
    total = (sum(connect_failures.values()) + sum(join_failures.values())
             + sum(ack_failures.values()) + ack_timeouts + send_errors + disconnects
             + unanswered + sum(change_failures.values()) + change_timeouts
             + change_send_errors)
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
        "change_ack_failures": change_failures,
        "change_ack_timeouts": change_timeouts,
        "change_send_errors": change_send_errors,
    }


def event_counts(totals: list[dict[str, Any]]) -> dict[str, Any]:
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


def generator_load(worker_cpu: Mapping[int, list[float]], processes: int) -> dict[str, Any]:
    """Each worker's CPU (% of a core) by phase, and a warning if one was near a core."""
    busiest = [round(max(cpu), 1) for _, cpu in sorted(worker_cpu.items())]
    figure: dict[str, Any] = {
        "processes": processes,
        "cpu_percent_busiest_phase": busiest,
        "cpu_percent_by_phase": {str(w): [round(c, 1) for c in cpu]
                                 for w, cpu in sorted(worker_cpu.items())},
        "pid": os.getpid(),
    }
    if busiest and max(busiest) > CPU_WARNING_PERCENT:
        figure["warning"] = (f"a worker was at {max(busiest):.0f} % of a core: the generator "
                             "may have been the bottleneck; try --processes")
    return figure
