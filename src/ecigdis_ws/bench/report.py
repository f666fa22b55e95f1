"""Figures from raw samples, the summary table, the machine a run happened on."""

from __future__ import annotations

import math
import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson


def percentiles(samples: Sequence[float]) -> dict[str, float | None]:
    """p50/p99/max (nearest rank) and mean of samples in ms; None without samples."""
    if not samples:
        return {"p50": None, "p99": None, "max": None, "mean": None, "count": 0}
    ordered = sorted(samples)
    count = len(ordered)

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * count) - 1)], 3)

    return {"p50": rank(0.50), "p99": rank(0.99), "max": round(ordered[-1], 3),
            "mean": round(math.fsum(ordered) / count, 3), "count": count}


def add_counts(target: dict[str, int], more: Mapping[str, int]) -> None:
    for key, value in more.items():
        target[key] = target.get(key, 0) + value


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1) if memory_kib else None,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
    }


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: str | Path, report: Mapping[str, Any]) -> None:
    Path(path).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _n(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(counts.items())) or "none"


def _phase_lines(label: str, phase: Mapping[str, Any]) -> list[str]:
    latency, ack = phase["latency_ms"], phase["ack_latency_ms"]
    return [
        f"  {label:<12} {_n(phase['sent'])} sent at {_n(phase['send_rate'])}/s "
        f"(target {_n(phase['target_rate'])}/s), {_n(phase['acked'])} acked "
        f"({_n(phase['messages_per_s'])}/s), ack p50 {_ms(ack['p50'])} ms "
        f"p99 {_ms(ack['p99'])} ms",
        f"  {'':<12} {_n(phase['deliveries'])} delivered ({_n(phase['deliveries_per_s'])}/s) "
        f"of {_n(phase['expected'])} expected; latency p50 {_ms(latency['p50'])} ms "
        f"p99 {_ms(latency['p99'])} ms max {_ms(latency['max'])} ms; "
        f"lost {_n(phase['losses'])}",
    ]


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    p = report["parameters"]
    lines = [
        f"ecigdis-ws bench {p['scenario']} → {p['url']} (target {p['target']}): "
        f"{p['clients']} clients in {p['conversations']} conversation(s) of {p['group']}, "
        f"{p['processes']} process(es)",
    ]
    c = report["connect"]
    connect_latency = c["latency_ms"]
    lines.append(
        f"  {'connect':<12} {c['joined']}/{p['clients']} joined "
        f"({c['connected']} authenticated) in {c['total_s']:.2f} s "
        f"({_n(c['per_s'])}/s); p50 {_ms(connect_latency['p50'])} ms "
        f"p99 {_ms(connect_latency['p99'])} ms"
    )
    if report.get("messages"):
        lines += _phase_lines("messages", report["messages"])
        if report["messages"].get("changes"):
            lines += kind_lines(report["messages"])
    ramp = report.get("ramp")
    if ramp:
        lines.append(f"  {'ramp':<12} {'step':<6} {'rate/s':>9} {'sent/s':>9} {'deliv/s':>10} "
                     f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'lost':>6} {'errors':>6}")
        for step in ramp["steps"]:
            lines.append(
                f"  {'':<12} {step['stage']:<6} {_n(step['target_rate']):>9} "
                f"{_n(step['send_rate']):>9} "
                f"{_n(step['deliveries_per_s']):>10} {_ms(step['latency_ms']['p50']):>8} "
                f"{_ms(step['latency_ms']['p99']):>8} {_ms(step['latency_ms']['max']):>8} "
                f"{_n(step['losses']):>6} {_n(step['errors']):>6}"
                f"{'' if step['held'] else '  ✗ ' + step['verdict']}"
            )
        held = ramp["highest_rate_held"]
        lines.append(f"  {'held':<12} {_n(held) if held else 'no step'} msg/s with no loss "
                     f"and p99 ≤ {p['ramp']['p99_bound_ms']} ms ({ramp['stopped_because']})")
    if report.get("reconnect"):
        lines += _reconnect_lines(report["reconnect"])
    m = report["memory"]
    if m["per_connection_kib"] is not None:
        lines.append(
            f"  {'memory':<12} {m['per_connection_kib']:.1f} KiB per connection "
            f"({m['before_bytes'] / 2**20:.1f} → {m['after_bytes'] / 2**20:.1f} MiB "
            f"for {m['connections']} connections, {m['source']})")
    else:
        lines.append(f"  {'memory':<12} - ({m['source']})")
    e = report["errors"]
    lines.append(
        f"  {'errors':<12} {e['total']} (connect {_counts(e['connect_failures'])}; "
        f"join {_counts(e['join_failures'])}; acks {_counts(e['ack_failures'])}; "
        f"ack timeouts {e['ack_timeouts']}; disconnects {e['disconnects']}; "
        f"error events {_counts(e['error_events'])})"
        + (f"; edits and deletions: acks {_counts(e['change_ack_failures'])}, ack timeouts "
           f"{e['change_ack_timeouts']}, not sent {e['change_send_errors']}"
           if _changed_messages(p) else ""))
    lines.append(f"  {'losses':<12} {report['losses']} (every phase, warm-up included)")
    g = report["generator"]
    cpu = ", ".join(f"{w:.0f} %" for w in g["cpu_percent_busiest_phase"])
    lines.append(f"  {'generator':<12} CPU per worker in its busiest phase: {cpu} of one core"
                 + (f"; {g['warning']}" if g.get("warning") else ""))
    lines += rate_limit_warning(report)
    return lines


def _changed_messages(parameters: Mapping[str, Any]) -> bool:
    """Whether the run edited or deleted messages (its `changes` parameters)."""
    changes = parameters.get("changes") or {}
    return bool(changes.get("change_share") or changes.get("delete_share"))


def kind_lines(phase: Mapping[str, Any]) -> list[str]:
    """The measured phase by kind: sends, edits, deletions (changes.py), each with its
    counts and its sender → receiver latency."""
    lines = [f"  {'by kind':<12} {'kind':<7} {'sent':>8} {'acked':>8} {'delivered':>10} "
             f"{'expected':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'lost':>6} "
             f"{'errors':>6}"]
    kinds = {"send": phase, **phase["changes"]}
    for name, figures in kinds.items():
        latency = figures["latency_ms"]
        lines.append(
            f"  {'':<12} {name:<7} {_n(figures['sent']):>8} {_n(figures['acked']):>8} "
            f"{_n(figures['deliveries']):>10} {_n(figures['expected']):>10} "
            f"{_ms(latency['p50']):>8} {_ms(latency['p99']):>8} {_ms(latency['max']):>8} "
            f"{_n(figures['losses']):>6} {_n(figures['errors']):>6}")
    fallbacks = ", ".join(f"{name} {_n(figures['fallbacks'])}"
                          for name, figures in phase["changes"].items())
    lines.append(f"  {'':<12} ticks that found no own message eligible and sent instead: "
                 f"{fallbacks}")
    return lines


def _count_lines(label: str, phase: Mapping[str, Any]) -> list[str]:
    """A phase of a few messages sent at chosen moments: counts, no rates."""
    latency = phase["latency_ms"]
    return [f"  {label:<12} {_n(phase['sent'])} sent, {_n(phase['acked'])} acked; "
            f"{_n(phase['deliveries'])} delivered of {_n(phase['expected'])} expected, "
            f"sent → received (live or replayed on rejoin) p50 {_ms(latency['p50'])} ms "
            f"max {_ms(latency['max'])} ms; lost {_n(phase['losses'])}"]


def _reconnect_lines(storm: Mapping[str, Any]) -> list[str]:
    restart, back = storm["restart"], storm["back_after_kill_ms"]
    all_back = storm["all_back_s"]
    since = "with since" if storm["policy"]["since"] else "WITHOUT since"
    return [
        *_count_lines("before kill", storm["phases"]["before"]),
        *_phase_lines("during kill", storm["phases"]["during_kill"]),
        f"  {'restart':<12} exit {restart['exit_code']} after {restart['seconds']:.2f} s: "
        f"{restart['command']}",
        f"  {'back':<12} {storm['back']}/{storm['clients']} rejoined {since} "
        + (f"all within {all_back:.2f} s of the kill "
           f"({storm['all_back_after_restart_s']} s after the restart command returned)"
           if all_back is not None
           else f"({storm['not_back']} NOT back)")
        + f"; after the kill p50 {_ms(back['p50'])} ms p99 {_ms(back['p99'])} ms; "
        f"attempts p50 {_n(storm['attempts']['p50'])} max {_n(storm['attempts']['max'])} "
        f"(failed attempts: {_counts(storm['attempt_failures'])})",
        *_count_lines("after return", storm["phases"]["after_return"]),
        f"  {'missed':<12} {storm['missed']} (acked before the kill "
        f"{storm['missed_acked_before_kill']}, after the return "
        f"{storm['missed_acked_after_return']}); cut off unacked by the kill "
        f"{storm['unacked_at_kill']}; repeats dropped {storm['repeated_deliveries']}",
    ]


def rate_limit_warning(report: Mapping[str, Any]) -> list[str]:
    count = report["errors"]["rate_limited"]
    if not count:
        return []
    return [
        f"!!! {count} RATE_LIMITED errors: the server's rate limits throttled this run and "
        "its figures are not valid.",
        "!!! Run the server under test with " + " ".join(
            f"{k}={v}" for k, v in report["server_settings_expected"].items()) + ".",
    ]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines
