"""benchmarks/nodes_report.py: the figures nodes.py reports from its readings — the
metric sums, each node's share and fan-out reads, the idle and local checks, and the
spread comparison. Pure: the readings are given."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ecigdis_ws.bench.changes import ChangeOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from nodes_report import (
    RECEIVED,
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

EXPOSITION = f"""\
# HELP {RECEIVED} Fan-out messages read from Redis
# TYPE {RECEIVED} counter
{RECEIVED}{{channel="ecigdis-ws:fanout"}} 120.0
{RECEIVED}{{channel="ecigdis-ws:fanout:room:7"}} 30.0
{RECEIVED.removesuffix("_total")}_created{{channel="x"}} 1.7e9
ecigdis_ws_fanout_subscriptions 4.0
"""

LOCAL = LayoutSpec("local", 3, 1500, 5, 1500.0, "conversation")
IDLE = LayoutSpec("idle", 2, 1000, 5, 2000.0, "conversation", 1000)


def test_a_counter_is_summed_over_its_labels_and_absent_is_none() -> None:
    assert metric_total(EXPOSITION, RECEIVED) == 150.0
    assert metric_total(EXPOSITION, "ecigdis_ws_fanout_subscriptions") == 4.0
    # A name that only starts like another is not counted with it.
    assert metric_total(EXPOSITION, "ecigdis_ws_fanout") is None
    assert metric_total("", RECEIVED) is None


def test_share_and_received_are_in_percent_of_all_published() -> None:
    before = [Sample(1.0, 100, 10, 1), Sample(2.0, 0, 0, 1), Sample(0.5, 50, None, None)]
    after = [Sample(3.0, 700, 110, 2), Sample(2.5, 300, 400, 2), Sample(1.5, 50, None, None)]
    rows = node_rows(before, after)
    assert [r["cpu_s"] for r in rows] == [2.0, 0.5, 1.0]
    assert [r["published"] for r in rows] == [600, 300, 0]
    assert [r["share_percent"] for r in rows] == [66.67, 33.33, 0.0]
    assert [r["received"] for r in rows] == [100, 400, None]
    assert [r["received_percent_of_published"] for r in rows] == [11.11, 44.44, None]
    assert [r["node"] for r in rows] == ["A", "B", "C"]
    within = checks(LOCAL, rows)
    # A reads 11 % against a 67 % share, B 44 % against 33 % + 10: over; C unknown.
    assert within["received_within_share"] == [True, False, None]
    assert within["all_within_share"] is None
    assert within["cpu_s_per_1000_messages"] == round(1000 * 3.5 / 900, 4)


def test_the_idle_node_s_cpu_is_a_percentage_of_the_loaded_one_s() -> None:
    rows = node_rows([Sample(0, 0, 0, 0), Sample(0, 0, 0, 0)],
                     [Sample(10.0, 40000, 40000, 200), Sample(0.15, 0, 0, 200)])
    figures = checks(IDLE, rows)
    assert figures["b_cpu_percent_of_a"] == 1.5
    assert figures["b_within_target"] is True
    rows[1]["cpu_s"] = 0.9
    assert checks(IDLE, rows)["b_within_target"] is False


def report(mode: str, cpu_per_1000: float | None, p99: float | None) -> dict[str, Any]:
    return {"layout": "spread", "mode": mode, "checks": {"cpu_s_per_1000_messages":
                                                          cpu_per_1000},
            "latency_ms": {"p50": 3.0, "p99": p99}, "losses": 0, "errors": 0,
            "nodes": [{"node": "A", "cpu_s": 1.0, "published": 10, "share_percent": 100.0,
                       "received": None, "received_percent_of_published": None,
                       "subscriptions": None, "connections": 6.0}]}


def test_per_room_may_be_at_most_ten_percent_worse_than_single_when_spread() -> None:
    fine = compare_spread(report("single", 2.0, 20.0), report("per-room", 2.2, 21.0))
    assert fine["cpu_s_per_1000_messages"]["change_percent"] == 10.0
    assert fine["p99_ms"]["change_percent"] == 5.0
    assert fine["within_target"] is True
    slower = compare_spread(report("single", 2.0, 20.0), report("per-room", 1.5, 22.4))
    assert slower["p99_ms"]["within_target"] is False and slower["within_target"] is False
    unknown = compare_spread(report("single", 2.0, None), report("per-room", 1.5, 22.4))
    assert unknown["within_target"] is None


def test_the_summary_says_n_a_for_figures_a_node_does_not_expose() -> None:
    single, per_room = report("single", 2.0, 20.0), report("per-room", 2.6, 20.0)
    text = summary_markdown([single, per_room], compare_spread(single, per_room))
    rows = [line for line in text.splitlines() if line.startswith("| spread")]
    assert len(rows) == 2
    assert "| n/a (n/a) |" in rows[0]
    assert "(30 %)" in text and "within 10 %: **no**" in text


def test_a_node_s_warnings_are_counted_by_event_and_reason() -> None:
    log = "\n".join([
        '{"event": "fan-out to other nodes failed", "reason": "Too many connections", '
        '"level": "warning"}',
        '{"event": "fan-out to other nodes failed", "reason": "Too many connections", '
        '"level": "warning"}',
        '{"event": "listening on the fan-out channel", "level": "info"}',
        '{"event": "database down", "level": "error"}',
        "Traceback (most recent call last):",  # not JSON: not counted
    ])
    assert count_warnings(log) == {
        "fan-out to other nodes failed: Too many connections": 2, "database down": 1}
    single = report("single", 2.0, 20.0)
    single["nodes"][0]["log_warnings"] = count_warnings(log)
    text = summary_markdown([single], None)
    assert "- spread / single / A: 2x fan-out to other nodes failed: Too many connections, " \
           "1x database down" in text


def kind(sent: int, p50: float, p99: float, errors: int = 0) -> dict[str, Any]:
    """One kind's figures as the bench's report has them (bench/changes.py)."""
    return {"sent": sent, "acked": sent, "expected": 5 * sent, "deliveries": 5 * sent,
            "losses": 0, "errors": errors,
            "latency_ms": {"p50": p50, "p99": p99, "max": 2 * p99}}


def test_edits_and_deletions_go_to_the_bench_only_when_asked_for() -> None:
    spread = layout_spec("spread", Sizes())
    urls = ["http://n:1", "http://n:2", "http://n:3"]
    plain = bench_args(spread, urls, warmup_s=5, duration_s=21, drain_s=5)
    assert plain == bench_args(spread, urls, warmup_s=5, duration_s=21, drain_s=5,
                               changes=ChangeOptions())
    assert "--change-share" not in plain
    changed = bench_args(spread, urls, warmup_s=5, duration_s=21, drain_s=5,
                         changes=ChangeOptions(0.1, 0.05, 2))
    assert changed[len(plain):] == ["--change-share", "0.1", "--delete-share", "0.05",
                                    "--change-delay", "2"]


def test_a_run_with_changes_has_a_latency_row_per_kind() -> None:
    bench = {"messages": {**kind(2550, 18.0, 60.0), "changes": {
        "edit": kind(300, 25.5, 90.0), "delete": kind(150, 30.0, 120.0, errors=1)}}}
    kinds = latency_by_kind(bench)
    assert list(kinds) == ["send", "edit", "delete"]
    assert kinds["edit"] == {"sent": 300, "acked": 300, "expected": 1500,
                             "deliveries": 1500, "losses": 0, "errors": 0, "p50_ms": 25.5,
                             "p99_ms": 90.0, "max_ms": 180.0}
    assert latency_by_kind({"messages": kind(10, 1.0, 2.0)}) == {
        "send": latency_by_kind({"messages": kind(10, 1.0, 2.0)})["send"]}
    assert latency_by_kind({}) == {}
    changed = report("per-room", 2.0, 60.0) | {"latency_by_kind": kinds}
    plain = report("single", 2.0, 60.0) | {
        "latency_by_kind": latency_by_kind({"messages": kind(10, 1.0, 2.0)})}
    text = summary_markdown([plain, changed], None)
    rows = [line for line in text.splitlines() if line.startswith("| spread | per-room | ")
            and line.split(" | ")[2] in ("send", "edit", "delete")]
    assert rows == [
        "| spread | per-room | send | 2,550 | 2,550 | 12,750 / 12,750 | 0 | 0 | 18 | 60 | 120 |",
        "| spread | per-room | edit | 300 | 300 | 1,500 / 1,500 | 0 | 0 | 25.5 | 90 | 180 |",
        "| spread | per-room | delete | 150 | 150 | 750 / 750 | 0 | 1 | 30 | 120 | 240 |"]
    # A run without changes has no such rows, and a summary of only such runs no table.
    assert "Latency by kind" not in summary_markdown([plain], None)
