"""The pure half of benchmarks/nodes.py: the layouts, the bench's command line for
each, and the arithmetic of the report (no processes, no clock, no network).

Definitions used in every figure:
- a node's **published** messages in the window: the delta of its own
  `ecigdis_ws_messages_stored_total` (each `message:send` of a client of that node
  is stored once, by that node, and published once for the other nodes);
- its **share**: published by that node / published by all nodes, in %;
- its **received**: the delta of `ecigdis_ws_fanout_received_total` (summed over
  its `channel` labels): the fan-out messages it read from Redis, its own included
  when Redis sends them back to it; as % of all published;
- its **CPU**: the delta of utime + stime of its process (/proc/PID/stat).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ecigdis_ws.bench.changes import ChangeOptions

Layout = Literal["idle", "local", "spread"]
LAYOUTS: tuple[Layout, ...] = ("idle", "local", "spread")
MODES = ("single", "per-room")
RECEIVED = "ecigdis_ws_fanout_received_total"
SUBSCRIPTIONS = "ecigdis_ws_fanout_subscriptions"
STORED = "ecigdis_ws_messages_stored_total"
CONNECTIONS = "ecigdis_ws_connections"

# The targets the report checks (issue 18): an idle node's CPU as a share of the
# loaded one's; a node's fan-out reads at most this far above its own share; per-room
# at most this much worse than single in the spread layout.
IDLE_TARGET_PERCENT = 2.0
LOCAL_MARGIN_POINTS = 10.0
SPREAD_WORSE_PERCENT = 10.0


@dataclass(frozen=True)
class LayoutSpec:
    name: Layout
    nodes: int
    clients: int  # the senders' clients, spread over the nodes by `placement`
    group: int
    rate: float  # msg/s in total
    placement: str  # the bench's --placement
    idle_clients: int = 0  # on the last node, in conversations of their own


@dataclass(frozen=True)
class Sizes:
    """The options that size the layouts (nodes.py's command line)."""

    idle_active_clients: int = 1000
    idle_rate: float = 2000.0
    idle_clients: int = 1000
    idle_group: int = 5
    clients: int = 1500
    rate: float = 1500.0
    local_group: int = 5
    spread_group: int = 6


def layout_spec(name: Layout, sizes: Sizes) -> LayoutSpec:
    if name == "idle":
        # Node A: every sender; node B: idle clients only (the bench's --idle-url).
        return LayoutSpec("idle", 2, sizes.idle_active_clients, sizes.idle_group,
                          sizes.idle_rate, "conversation", sizes.idle_clients)
    if name == "local":
        return LayoutSpec("local", 3, sizes.clients, sizes.local_group, sizes.rate,
                          "conversation")
    return LayoutSpec("spread", 3, sizes.clients, sizes.spread_group, sizes.rate, "member")


def bench_args(spec: LayoutSpec, urls: Sequence[str], *, warmup_s: float, duration_s: float,
               drain_s: float, changes: ChangeOptions | None = None) -> list[str]:
    """`ecigdis-ws bench` arguments (after the program) for one layout on these nodes."""
    senders = urls[:-1] if spec.idle_clients else urls
    args = [",".join(senders), "--scenario", "chat", "--clients", str(spec.clients),
            "--group", str(spec.group), "--rate", f"{spec.rate:g}", "--placement",
            spec.placement, "--warmup", f"{warmup_s:g}", "--duration", f"{duration_s:g}",
            "--drain", f"{drain_s:g}"]
    if spec.idle_clients:
        args += ["--idle-clients", str(spec.idle_clients), "--idle-url", urls[-1]]
    return args + (changes.argv() if changes is not None else [])


KINDS = ("send", "edit", "delete")


def latency_by_kind(bench: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The bench's measured phase by kind: a send's figures, and an edit's and a
    deletion's when the run had them (sender's emit → each other member, every node)."""
    messages = bench.get("messages") or {}
    if not messages:
        return {}
    kinds = {"send": messages, **(messages.get("changes") or {})}
    return {name: {
        "sent": figures["sent"], "acked": figures["acked"],
        "expected": figures["expected"], "deliveries": figures["deliveries"],
        "losses": figures["losses"], "errors": figures.get("errors"),
        "p50_ms": figures["latency_ms"]["p50"], "p99_ms": figures["latency_ms"]["p99"],
        "max_ms": figures["latency_ms"]["max"],
    } for name, figures in kinds.items() if name in KINDS}


def kind_table(reports: Sequence[Mapping[str, Any]]) -> list[str]:
    """A latency row per layout, mode and kind, for the runs with edits or deletions."""
    changed = [r for r in reports if len(r.get("latency_by_kind") or {}) > 1]
    if not changed:
        return []
    lines = ["", "Latency by kind, sender's emit → every other member on any node "
             "(the bench's measured phase):", "",
             "| layout | mode | kind | sent | acked | delivered / expected | lost | errors | "
             "p50 ms | p99 ms | max ms |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for report in changed:
        for name, row in report["latency_by_kind"].items():
            lines.append(
                f"| {report['layout']} | {report['mode']} | {name} | {_cell(row['sent'])} | "
                f"{_cell(row['acked'])} | {_cell(row['deliveries'])} / "
                f"{_cell(row['expected'])} | {_cell(row['losses'])} | {_cell(row['errors'])} | "
                f"{_cell(row['p50_ms'])} | {_cell(row['p99_ms'])} | {_cell(row['max_ms'])} |")
    return lines


def metric_total(text: str, name: str) -> float | None:
    """The sum of every sample of `name` (all label values) in Prometheus text
    exposition; None when the node does not expose it."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
            found = True
    return total if found else None


@dataclass(frozen=True)
class Sample:
    """One node's readings at one instant."""

    cpu_s: float
    stored: float
    received: float | None
    subscriptions: float | None
    connections: float | None = None


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def _percent(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else round(100 * part / whole, 2)


def node_rows(before: Sequence[Sample], after: Sequence[Sample]) -> list[dict[str, Any]]:
    """Per node: CPU seconds, messages published, received, share and received in %
    of all published, subscriptions at the end of the window."""
    published = [a.stored - b.stored for b, a in zip(before, after, strict=True)]
    total = sum(published)
    rows = []
    for index, (b, a) in enumerate(zip(before, after, strict=True)):
        received = _delta(a.received, b.received)
        rows.append({
            "node": chr(ord("A") + index),
            "cpu_s": round(a.cpu_s - b.cpu_s, 3),
            "published": published[index],
            "share_percent": _percent(published[index], total),
            "received": received,
            "received_percent_of_published": _percent(received, total),
            "subscriptions": a.subscriptions,
            "connections": a.connections,  # at the end: where the clients are
        })
    return rows


def checks(spec: LayoutSpec, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The layout's own figures: idle, B's CPU as % of A's; local, each node's
    received within its share + LOCAL_MARGIN_POINTS; every layout, CPU per 1,000."""
    published = sum(row["published"] for row in rows)
    cpu = sum(row["cpu_s"] for row in rows)
    figures: dict[str, Any] = {
        "published": published,
        "cpu_s": round(cpu, 3),
        "cpu_s_per_1000_messages": round(1000 * cpu / published, 4) if published else None,
    }
    if spec.name == "idle":
        ratio = _percent(rows[1]["cpu_s"], rows[0]["cpu_s"])
        figures["b_cpu_percent_of_a"] = ratio
        figures["b_within_target"] = None if ratio is None else ratio <= IDLE_TARGET_PERCENT
    if spec.name == "local":
        within = [None if row["received_percent_of_published"] is None
                  else row["received_percent_of_published"]
                  <= row["share_percent"] + LOCAL_MARGIN_POINTS for row in rows]
        figures["received_within_share"] = within
        figures["all_within_share"] = None if None in within else all(within)
    return figures


def compare_spread(single: Mapping[str, Any], per_room: Mapping[str, Any]) -> dict[str, Any]:
    """per-room against single in the spread layout: CPU per 1,000 messages and p99,
    each as % change; within target when neither is SPREAD_WORSE_PERCENT worse."""
    def change(key: str, a: float | None, b: float | None) -> dict[str, Any]:
        worse = None if a is None or b is None or not a else round(100 * (b - a) / a, 1)
        return {"single": a, "per-room": b, "change_percent": worse,
                "within_target": None if worse is None else worse <= SPREAD_WORSE_PERCENT}

    cpu = change("cpu", single["checks"]["cpu_s_per_1000_messages"],
                 per_room["checks"]["cpu_s_per_1000_messages"])
    p99 = change("p99", single["latency_ms"]["p99"], per_room["latency_ms"]["p99"])
    return {"cpu_s_per_1000_messages": cpu, "p99_ms": p99,
            "within_target": None if None in (cpu["within_target"], p99["within_target"])
            else bool(cpu["within_target"] and p99["within_target"])}


def count_warnings(log: str) -> dict[str, int]:
    """A node's JSON log lines at warning or above, counted by "event: reason"."""
    counts: dict[str, int] = {}
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("level") not in ("warning", "error",
                                                                     "critical"):
            continue
        key = str(entry.get("event"))
        if entry.get("reason"):
            key += f": {entry['reason']}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def warning_lines(reports: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per layout, mode and node that logged warnings."""
    lines = []
    for report in reports:
        for row in report["nodes"]:
            if row.get("log_warnings"):
                what = ", ".join(f"{n:,}x {k}" for k, n in sorted(
                    row["log_warnings"].items(), key=lambda item: -item[1]))
                lines.append(f"- {report['layout']} / {report['mode']} / {row['node']}: {what}")
    return lines


def _cell(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") + unit
    return f"{value:,}{unit}"


def summary_rows(report: Mapping[str, Any]) -> list[str]:
    """One markdown row per node of one layout and mode."""
    lines = []
    latency = report["latency_ms"]
    for index, row in enumerate(report["nodes"]):
        extra = ""
        figures = report["checks"]
        if report["layout"] == "idle" and index == 1:
            extra = f"B = {_cell(figures['b_cpu_percent_of_a'], ' %')} of A"
        if report["layout"] == "local":
            extra = f"within share + {LOCAL_MARGIN_POINTS:g}: " + _cell(
                figures["received_within_share"][index])
        lines.append(
            f"| {report['layout']} | {report['mode']} | {row['node']} | "
            f"{_cell(row['connections'])} | {_cell(row['cpu_s'])} | "
            f"{_cell(row['published'])} ({_cell(row['share_percent'], ' %')}) | "
            f"{_cell(row['received'])} ({_cell(row['received_percent_of_published'], ' %')}) | "
            f"{_cell(row['subscriptions'])} | {_cell(figures['cpu_s_per_1000_messages'])} | "
            f"{_cell(latency['p50'])} / {_cell(latency['p99'])} | {report['losses']} / "
            f"{report['errors']} | {extra} |")
    return lines


def summary_markdown(reports: Sequence[Mapping[str, Any]],
                     spread: Mapping[str, Any] | None) -> str:
    lines = [
        "| layout | mode | node | sockets | CPU s | published (share) | received (% of "
        "published) | subscriptions | CPU s / 1,000 msg (all nodes) | p50 / p99 ms | "
        "lost / errors | |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        lines += summary_rows(report)
    if spread is not None:
        cpu, p99 = spread["cpu_s_per_1000_messages"], spread["p99_ms"]
        lines += ["", "spread, per-room against single: CPU s per 1,000 messages "
                  f"{_cell(cpu['single'])} → {_cell(cpu['per-room'])} "
                  f"({_cell(cpu['change_percent'], ' %')}), p99 {_cell(p99['single'])} → "
                  f"{_cell(p99['per-room'])} ms ({_cell(p99['change_percent'], ' %')}); "
                  f"within {SPREAD_WORSE_PERCENT:g} %: {_cell(spread['within_target'])}"]
    lines += kind_table(reports)
    warned = warning_lines(reports)
    if warned:
        lines += ["", "Warnings the nodes logged (whole run, not only the window):", *warned]
    return "\n".join(lines) + "\n"
