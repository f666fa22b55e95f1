"""`ecigdis-ws bench`: small real runs against the real server and the Node.js peer.

The server runs in this process (RunningServer) while the bench's workers are real
processes speaking websocket to it; some runs go through the console script, the
others through run_bench. Every figure checked here is also checked against what
the server itself saw (its metrics), so a bench that miscounts fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from ecigdis_ws.bench.database import setup_conversations
from ecigdis_ws.bench.memory import metric_value
from ecigdis_ws.bench.plan import BenchOptions, RampOptions, conversation_id, groups
from ecigdis_ws.bench.runner import run_bench
from ecigdis_ws.services.container import ChatServices
from tests.bench.conftest import REAL_CLOCK_TOKENS, NodePeer
from tests.support import RunningServer

SCRIPT = Path(sys.executable).parent / "ecigdis-ws"
CLI_TIMEOUT_S = 60
# RunningServer's ManualClock starts in 2027: the bench's tokens must outlive it.
TOKEN_TTL_S = 2 * 366 * 24 * 3600
QUICK = ("--warmup", "0.5", "--settle", "0.2", "--no-progress",
         "--token-ttl", str(TOKEN_TTL_S))
REPORT_FIELDS = ("tool", "version", "date", "machine", "parameters", "connect", "memory",
                 "errors", "losses", "events", "generator", "ok", "server_settings_expected")
PHASE_FIELDS = ("target_rate", "sent", "send_rate", "acked", "messages_per_s", "ack_failures",
                "ack_timeouts", "expected", "deliveries", "deliveries_per_s", "losses",
                "duplicates", "latency_ms", "ack_latency_ms")


def options(server: RunningServer, **overrides: Any) -> BenchOptions:
    values: dict[str, Any] = {"url": server.url, "warmup_s": 0.5, "settle_s": 0.2,
                              "progress": False, "token_ttl_s": TOKEN_TTL_S}
    values.update(overrides)
    return BenchOptions(**values)


def metric(chat: ChatServices, name: str, **labels: str) -> float:
    value = chat.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def stored(server: RunningServer) -> float:
    return metric(server.chat, "ecigdis_ws_messages_stored_total")


def cli_env(server: RunningServer, home: Path) -> dict[str, str]:
    """The server's own settings, as its operator's shell would have them."""
    settings = server.settings
    assert settings.jwt_secret
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "DATABASE_URL": settings.database_url,
        "DB_TABLE_PREFIX": settings.db_table_prefix,
        "JWT_SECRET": settings.jwt_secret,
    }
    # A checkout tested with another checkout's venv (its own src first on the path)
    # runs its own bench in the console script too, not the venv's installed one.
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


async def bench_cli(cwd: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`ecigdis-ws bench ARGS`, awaited so the in-process server keeps serving."""
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT), "bench", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(CLI_TIMEOUT_S):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# -- chat -------------------------------------------------------------------------------------


async def test_chat_delivers_every_message_and_reports_every_figure(
    bench_server: RunningServer, tmp_path: Path
) -> None:
    report_path = tmp_path / "chat.json"
    code, out, err = await bench_cli(
        tmp_path, cli_env(bench_server, tmp_path), bench_server.url, "--scenario", "chat",
        "--clients", "20", "--group", "5", "--rate", "50", "--duration", "2", "--setup",
        "--json", str(report_path), *QUICK)
    assert code == 0, out + err
    assert "lost 0" in out
    report = json.loads(report_path.read_text())
    assert set(REPORT_FIELDS) <= set(report)
    assert report["parameters"] | {"scenario": "chat", "clients": 20, "group": 5,
                                   "conversations": 4, "rate": 50.0, "duration_s": 2.0} == (
        report["parameters"])
    assert report["connect"]["joined"] == 20
    messages = report["messages"]
    assert set(PHASE_FIELDS) <= set(messages)
    assert messages["sent"] == messages["acked"] == 100
    assert messages["expected"] == messages["deliveries"] == 400  # 4 others in each group
    assert messages["losses"] == 0
    assert messages["deliveries_per_s"] == pytest.approx(200, rel=0.1)
    latency = messages["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    assert latency["count"] == 400
    assert messages["ack_latency_ms"]["count"] == 100
    assert report["errors"]["total"] == 0
    assert report["losses"] == 0
    assert report["ok"] is True
    # The server stored every message the bench counted, warm-up (25) included.
    assert stored(bench_server) == 125


async def test_setup_creates_the_conversations_once_and_reuses_them(
    bench_server: RunningServer,
) -> None:
    plan = options(bench_server, clients=20, group=5)
    first = await setup_conversations(plan, bench_server.settings)
    again = await setup_conversations(plan, bench_server.settings)
    assert (first.conversations, first.created, first.members_added) == (4, 4, 20)
    assert (again.conversations, again.created, again.members_added) == (4, 0, 0)
    for conversation, members in groups(plan).items():
        assert await bench_server.chat.storage.conversations.member_ids(conversation) == members


def test_runs_with_different_group_sizes_never_share_a_conversation() -> None:
    fives = BenchOptions(url="http://127.0.0.1:1", clients=10, group=5)
    tens = BenchOptions(url="http://127.0.0.1:1", clients=10, group=10)
    assert set(groups(fives)).isdisjoint(groups(tens))
    assert list(groups(fives)) == [conversation_id(fives, 0), conversation_id(fives, 1)]


# -- connect, broadcast, memory ----------------------------------------------------------------


@pytest.mark.backends("sqlite")
async def test_connect_scenario_joins_every_client_and_reports_the_rate(
    bench_server: RunningServer,
) -> None:
    plan = options(bench_server, scenario="connect", clients=50, concurrency=10)
    await setup_conversations(plan, bench_server.settings)
    report = await run_bench(plan, bench_server.settings)
    connect = report["connect"]
    assert (connect["connected"], connect["joined"], connect["failed"]) == (50, 50, 0)
    assert connect["total_s"] > 0
    assert connect["per_s"] == pytest.approx(50 / connect["total_s"], rel=0.01)
    assert connect["latency_ms"]["count"] == 50
    assert report["ok"] is True
    assert metric(bench_server.chat, "ecigdis_ws_events_received_total",
                  event="conversation:join") == 50


@pytest.mark.backends("sqlite")
async def test_broadcast_reaches_every_other_member_of_one_conversation(
    bench_server: RunningServer,
) -> None:
    plan = options(bench_server, scenario="broadcast", clients=30, rate=10.0, duration_s=1.0,
                   warmup_s=0.0)
    await setup_conversations(plan, bench_server.settings)
    report = await run_bench(plan, bench_server.settings)
    assert report["parameters"]["conversations"] == 1
    messages = report["messages"]
    assert messages["sent"] == messages["acked"] == 10
    assert messages["deliveries"] == messages["expected"] == 10 * 29
    assert report["losses"] == 0
    assert report["ok"] is True


@pytest.mark.backends("sqlite")
async def test_memory_per_connection_is_read_from_the_server_process(
    bench_server: RunningServer,
) -> None:
    # This process is the server's: its resident memory is read before and after.
    plan = options(bench_server, scenario="connect", clients=50, server_pid=os.getpid())
    await setup_conversations(plan, bench_server.settings)
    report = await run_bench(plan, bench_server.settings)
    memory = report["memory"]
    assert memory["source"] == f"/proc/{os.getpid()}/status VmRSS"
    assert memory["connections"] == 50
    assert memory["before_bytes"] > 0 and memory["after_bytes"] > 0
    assert memory["per_connection_bytes"] == round(
        (memory["after_bytes"] - memory["before_bytes"]) / 50)


def test_resident_memory_is_read_from_prometheus_text() -> None:
    text = ("# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
            "# TYPE process_resident_memory_bytes gauge\n"
            "process_resident_memory_bytes 1.2345e+08\n"
            "process_resident_memory_bytes_total 1\n")
    assert metric_value(text, "process_resident_memory_bytes") == 123_450_000
    assert metric_value("ecigdis_ws_connections 3\n", "process_resident_memory_bytes") is None


# -- ramp -------------------------------------------------------------------------------------


@pytest.mark.backends("sqlite")
async def test_ramp_climbs_the_ladder_and_reports_the_highest_rate_held(
    bench_server: RunningServer,
) -> None:
    plan = options(bench_server, scenario="ramp", clients=10, group=5, warmup_s=0.0,
                   ramp=RampOptions(start=20, step=20, max_rate=60, step_duration_s=1.0,
                                    p99_bound_ms=1000))
    await setup_conversations(plan, bench_server.settings)
    report = await run_bench(plan, bench_server.settings)
    ramp = report["ramp"]
    assert [step["target_rate"] for step in ramp["steps"]] == [20, 40, 60]
    assert all(step["held"] and step["losses"] == 0 for step in ramp["steps"])
    assert ramp["highest_rate_held"] == 60
    assert ramp["stopped_because"] == "reached --max-rate 60"
    assert stored(bench_server) == 20 + 40 + 60


@pytest.mark.backends("sqlite")
async def test_ramp_stops_at_the_first_step_over_the_latency_bound(
    bench_server: RunningServer,
) -> None:
    plan = options(bench_server, scenario="ramp", clients=10, group=5, warmup_s=0.0,
                   ramp=RampOptions(start=20, step=20, max_rate=60, step_duration_s=1.0,
                                    p99_bound_ms=0.001))
    await setup_conversations(plan, bench_server.settings)
    report = await run_bench(plan, bench_server.settings)
    ramp = report["ramp"]
    assert len(ramp["steps"]) == 1
    assert ramp["steps"][0]["held"] is False
    assert ramp["highest_rate_held"] is None
    assert "p99" in ramp["stopped_because"]
    assert report["ok"] is False


class SlowPastRate:
    """Makes the real server slow past `limit` msg/s: a message:send beyond the
    `limit`-th of its bench phase (one phase per 1 s step; the phase is the first
    number of the bench's text) waits `delay_s` before it is handled, so a step
    above `limit` fails on p99 and one below it holds, whatever the machine."""

    def __init__(self, chat: ChatServices, limit: int, delay_s: float) -> None:
        self.post = chat.messages.post
        self.limit = limit
        self.delay_s = delay_s
        self.per_phase: dict[str, int] = {}
        chat.messages.post = self  # type: ignore[method-assign]

    async def __call__(self, actor: Any, conversation_id: int, text: str,
                       client_message_id: Any, *extras: Any) -> Any:
        phase = text.split(":", 1)[0]
        self.per_phase[phase] = self.per_phase.get(phase, 0) + 1
        if self.per_phase[phase] > self.limit:
            await asyncio.sleep(self.delay_s)
        return await self.post(actor, conversation_id, text, client_message_id, *extras)


@pytest.mark.backends("sqlite")
async def test_ramp_takes_fine_steps_from_the_last_step_held_after_one_fails(
    bench_server: RunningServer, tmp_path: Path,
) -> None:
    # 20/s holds, 40/s fails (5 of its 40 messages late), then fine steps of 1.25 from
    # 20: 25 and 31.25 hold, 39.06 fails; the held figure is 31.25, not the coarse 20.
    SlowPastRate(bench_server.chat, limit=35, delay_s=1.0)
    plan = options(bench_server, scenario="ramp", clients=10, group=5, warmup_s=0.0)
    await setup_conversations(plan, bench_server.settings)
    report_path = tmp_path / "ramp.json"
    code, out, err = await bench_cli(
        tmp_path, cli_env(bench_server, tmp_path), bench_server.url, "--scenario", "ramp",
        "--clients", "10", "--group", "5", "--start", "20", "--factor", "2",
        "--fine-factor", "1.25", "--rest", "0.5", "--step-duration", "1", "--p99-bound-ms", "500",
        "--warmup", "0", "--settle", "0.2", "--no-progress", "--token-ttl", str(TOKEN_TTL_S),
        "--json", str(report_path))
    assert code == 0, out + err
    ramp = json.loads(report_path.read_text())["ramp"]
    assert [(s["target_rate"], s["stage"], s["held"]) for s in ramp["steps"]] == [
        (20, "coarse", True), (40, "coarse", False), (25, "fine", True),
        (31.25, "fine", True), (39.062, "fine", False)]
    assert ramp["steps"][1]["verdict"].startswith("p99 ")
    # The idle --rest comes after each failed step, before the next, and only there.
    assert [s["rest_before_s"] for s in ramp["steps"]] == [0, 0, 0.5, 0, 0]
    assert ramp["highest_rate_held"] == 31.25
    assert ramp["stopped_because"].startswith("39/s (fine): p99 ")
    assert all(step["losses"] == 0 for step in ramp["steps"])
    assert "fine" in out and "31 msg/s" in out


# -- failures the bench must see ---------------------------------------------------------------


@pytest.mark.backends("sqlite")
async def test_a_missing_membership_is_counted_as_forbidden_and_fails_the_run(
    bench_server: RunningServer, tmp_path: Path
) -> None:
    # Conversations for 20 clients only: the last group of the 25 is nobody's.
    await setup_conversations(options(bench_server, clients=20, group=5), bench_server.settings)
    report_path = tmp_path / "forbidden.json"
    code, out, _ = await bench_cli(
        tmp_path, cli_env(bench_server, tmp_path), bench_server.url, "--clients", "25",
        "--group", "5", "--rate", "50", "--duration", "1", "--json", str(report_path), *QUICK)
    assert code == 1
    assert "join FORBIDDEN 5" in out
    report = json.loads(report_path.read_text())
    assert report["connect"]["joined"] == 20
    assert report["errors"]["join_failures"] == {"FORBIDDEN": 5}
    assert report["errors"]["error_events"] == {"FORBIDDEN": 5}
    assert report["errors"]["total"] == 5
    assert report["ok"] is False
    assert metric(bench_server.chat, "ecigdis_ws_errors_total", code="FORBIDDEN") == 5


@pytest.mark.backends("sqlite")
async def test_a_receiver_cut_off_mid_run_is_counted_as_lost_messages(
    bench_server: RunningServer,
) -> None:
    plan = options(bench_server, scenario="broadcast", clients=10, rate=20.0, duration_s=2.0,
                   warmup_s=0.0, drain_s=1.0)
    await setup_conversations(plan, bench_server.settings)
    run = asyncio.create_task(run_bench(plan, bench_server.settings))
    await bench_server.wait_until(lambda: stored(bench_server) >= 5, within=30)
    # The main site revokes one member's token: the server closes that socket.
    await bench_server.chat.sessions.end_user_sessions(plan.user_base + 9)
    report = await run
    assert report["errors"]["disconnects"] == 1
    assert report["errors"]["error_events"].get("AUTH_FAILED") == 1
    # Every message acknowledged after the cut missed that member.
    assert report["losses"] >= 10
    assert report["messages"]["deliveries"] + report["losses"] == report["messages"]["expected"]
    assert report["ok"] is False


@pytest.mark.backends("sqlite")
async def test_rate_limited_errors_are_reported_loudly(
    make_server: Any, tmp_path: Path
) -> None:
    async with make_server(**REAL_CLOCK_TOKENS) as server:  # default limits: 5 messages/s a user
        await setup_conversations(options(server, clients=10, group=5), server.settings)
        code, out, err = await bench_cli(
            tmp_path, cli_env(server, tmp_path), server.url, "--clients", "10", "--group",
            "5", "--rate", "200", "--duration", "1", *QUICK)
    assert code == 1
    assert "!!!" in err and "RATE_LIMITED" in err and "RATE_LIMIT_MESSAGES=0" in err
    assert "RATE_LIMITED" in out


# -- the Node.js peer -------------------------------------------------------------------------


@pytest.mark.node
async def test_the_node_peer_runs_the_same_chat_with_user_ids_as_tokens(
    node_peer: NodePeer, tmp_path: Path
) -> None:
    report_path = tmp_path / "node.json"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    code, out, err = await bench_cli(
        tmp_path, env, node_peer.url, "--target", "node", "--clients", "20", "--group", "5",
        "--rate", "50", "--duration", "2", "--user-base", "2000000",
        "--server-pid", str(node_peer.pid), "--json", str(report_path), *QUICK)
    assert code == 0, out + err
    report = json.loads(report_path.read_text())
    messages = report["messages"]
    assert messages["sent"] == messages["acked"] == 100
    assert messages["deliveries"] == messages["expected"] == 400
    assert report["losses"] == 0 and report["errors"]["total"] == 0
    assert report["memory"]["source"] == f"/proc/{node_peer.pid}/status VmRSS"
    assert report["memory"]["per_connection_bytes"] is not None
    assert report["server_settings_expected"] == {}


@pytest.mark.node
async def test_the_node_peer_connect_scenario_joins_every_client(
    node_peer: NodePeer,
) -> None:
    plan = BenchOptions(url=node_peer.url, target="node", scenario="connect", clients=50,
                        user_base=3_000_000, settle_s=0.2, progress=False)
    report = await run_bench(plan)
    assert report["connect"]["joined"] == 50
    assert report["ok"] is True
