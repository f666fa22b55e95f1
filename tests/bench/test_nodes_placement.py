"""Which node each bench client connects to (--placement, --idle-clients, --idle-url),
how the clients are split over worker processes, and the bench command line
benchmarks/nodes.py builds for each layout. Pure: no server, no process."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from ecigdis_ws.bench.plan import BenchOptions, client_specs, groups, split

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from nodes_report import Sizes, bench_args, layout_spec

URLS = "http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3"


def test_one_url_puts_every_client_on_it_as_before() -> None:
    options = BenchOptions("http://127.0.0.1:8080", clients=12, group=4)
    specs = client_specs(options)
    assert {s.node for s in specs} == {0}
    assert not any(s.idle for s in specs)
    assert [s.group for s in specs] == [i // 4 for i in range(12)]
    assert options.urls == ("http://127.0.0.1:8080",) and options.check() == []


def test_conversation_placement_keeps_each_conversation_on_node_k_mod_n() -> None:
    options = BenchOptions(URLS, clients=30, group=5, placement="conversation")
    specs = client_specs(options)
    for spec in specs:
        assert spec.node == spec.group % 3
    # 6 conversations: two per node, each whole.
    assert Counter(s.node for s in specs) == {0: 10, 1: 10, 2: 10}
    assert all(len({s.node for s in specs if s.group == g}) == 1 for g in range(6))


def test_member_placement_puts_member_j_of_every_conversation_on_node_j_mod_n() -> None:
    options = BenchOptions(URLS, clients=24, group=6, placement="member")
    specs = client_specs(options)
    for group in range(4):
        members = [s for s in specs if s.group == group]
        assert [s.node for s in members] == [0, 1, 2, 0, 1, 2]


def test_idle_clients_have_conversations_of_their_own_on_the_idle_url() -> None:
    # 7 active clients in groups of 5: the last active group is not full, and an idle
    # client must still not join it (it would then be expected to receive).
    options = BenchOptions("http://a:1", clients=7, group=5, idle_clients=6,
                           idle_url="http://b:2")
    specs = client_specs(options)
    active = [s for s in specs if not s.idle]
    idle = [s for s in specs if s.idle]
    assert len(active) == 7 and len(idle) == 6
    assert {s.node for s in active} == {0} and {s.node for s in idle} == {1}
    assert {s.group for s in idle} == {2, 3}
    assert not {s.conversation_id for s in idle} & {s.conversation_id for s in active}
    assert options.node_urls == ("http://a:1", "http://b:2")
    # --setup creates the idle clients' conversations too, with their members.
    assert len(groups(options)) == options.group_count == 4
    assert len({s.user_id for s in specs}) == 13


def test_every_worker_gets_its_share_of_senders_and_of_idle_clients() -> None:
    options = BenchOptions("http://a:1", clients=10, group=5, idle_clients=10,
                           idle_url="http://b:2")
    parts = split(client_specs(options), 2)
    assert [sum(not s.idle for s in part) for part in parts] == [5, 5]
    assert [sum(s.idle for s in part) for part in parts] == [5, 5]


def test_options_that_cannot_work_are_refused() -> None:
    assert BenchOptions("http://a:1,ftp://b", clients=10).check() == [
        "URL 'ftp://b': expected http(s):// or ws(s)://"]
    assert BenchOptions("http://a:1", scenario="connect", idle_clients=5).check() == [
        "--idle-clients and --idle-url are for --scenario chat"]
    assert BenchOptions("http://a:1", idle_url="http://b:2").check() == [
        "--idle-url needs --idle-clients"]
    assert "--scenario reconnect takes one URL" in " ".join(BenchOptions(
        "http://a:1,http://b:2", scenario="reconnect", restart_cmd="true").check())


def test_the_layouts_bench_command_lines() -> None:
    sizes = Sizes()
    urls = ["http://n:1", "http://n:2", "http://n:3"]
    idle = bench_args(layout_spec("idle", sizes), urls[:2], warmup_s=5, duration_s=21,
                      drain_s=5)
    assert idle[0] == "http://n:1"  # every sender on A
    assert idle[idle.index("--idle-url") + 1] == "http://n:2"
    assert idle[idle.index("--idle-clients") + 1] == "1000"
    assert idle[idle.index("--rate") + 1] == "2000"
    local = bench_args(layout_spec("local", sizes), urls, warmup_s=5, duration_s=21,
                       drain_s=5)
    assert local[0] == ",".join(urls)
    assert local[local.index("--placement") + 1] == "conversation"
    assert "--idle-clients" not in local
    spread = layout_spec("spread", sizes)
    assert (spread.nodes, spread.group, spread.placement) == (3, 6, "member")
