"""`ecigdis-ws bench` over several URLs: two real servers (in this process) sharing one
database and no Redis, so a message reaches only the members on the server its
sender is on. Whether clients went where --placement and --idle-url say is read
from what each server itself counted."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from ecigdis_ws.bench.database import setup_conversations
from ecigdis_ws.bench.plan import BenchOptions
from ecigdis_ws.bench.runner import run_bench
from tests.bench.conftest import UNLIMITED
from tests.support import RunningServer

TOKEN_TTL_S = 2 * 366 * 24 * 3600  # RunningServer's ManualClock starts in 2027


def stored(server: RunningServer) -> float:
    value = server.chat.metrics.registry.get_sample_value("ecigdis_ws_messages_stored_total")
    return value or 0.0


def joins(server: RunningServer) -> float:
    value = server.chat.metrics.registry.get_sample_value(
        "ecigdis_ws_events_received_total", {"event": "conversation:join"})
    return value or 0.0


async def bench(first: RunningServer, url: str, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"clients": 20, "group": 5, "rate": 50, "duration_s": 1.0,
                              "warmup_s": 0.5, "settle_s": 0.2, "drain_s": 2.0,
                              "progress": False, "token_ttl_s": TOKEN_TTL_S}
    options = BenchOptions(url=url, **(values | overrides))
    await setup_conversations(options, first.settings)
    return await run_bench(options, first.settings)


async def test_conversation_placement_keeps_each_conversation_whole_on_one_server(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
) -> None:
    async with make_server(**UNLIMITED) as one, make_server(**UNLIMITED) as two:
        report = await bench(one, f"{one.url},{two.url}", placement="conversation")
        # No fan-out between them, yet nothing is lost: every member is on its
        # conversation's server. Both servers had senders.
        assert report["ok"] is True and report["losses"] == 0
        assert joins(one) == joins(two) == 10
        assert stored(one) > 0 and stored(two) > 0
        sent = report["messages"]["sent"] + report["warmup"]["sent"]
        assert stored(one) + stored(two) == sent


async def test_member_placement_spreads_each_conversation_over_the_servers(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
) -> None:
    async with make_server(**UNLIMITED) as one, make_server(**UNLIMITED) as two:
        report = await bench(one, f"{one.url},{two.url}", placement="member",
                             drain_s=0.5)
        # Members 0, 2, 4 on one, 1, 3 on two: without Redis a message reaches only
        # the members on its sender's server, and the bench counts the rest lost.
        assert joins(one) == 12 and joins(two) == 8
        assert report["losses"] > 0 and report["ok"] is False


async def test_idle_clients_join_on_their_own_server_and_never_send(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
) -> None:
    async with make_server(**UNLIMITED) as one, make_server(**UNLIMITED) as two:
        report = await bench(one, one.url, idle_clients=10, idle_url=two.url)
        assert report["ok"] is True and report["losses"] == 0
        assert report["connect"]["joined"] == 30
        assert joins(one) == 20 and joins(two) == 10
        assert stored(two) == 0
        assert stored(one) == report["messages"]["sent"] + report["warmup"]["sent"]
