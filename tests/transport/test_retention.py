"""Retention through the real server, on SQLite and MariaDB: the running server
prunes the event log past EVENT_LOG_RETENTION_S, a long-poll cursor older than
what is kept is answered `resync: true` with the present cursor (the client then
catches up from history), a cursor that lost nothing is answered as ever, and
sends keep being acknowledged while a large backlog is pruned."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp

from ecigdis_ws.services.retention import PRUNE_BATCH, PRUNE_PAUSE_S
from ecigdis_ws.storage.sql import SqlStorage
from ecigdis_ws.transport.rest_routes import REST_API
from tests.support import RunningServer
from tests.transport.conftest import room
from tests.transport.rest_support import Rest

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]
RETENTION_S = 60


def storage_of(server: RunningServer) -> SqlStorage:
    storage = server.chat.storage
    assert isinstance(storage, SqlStorage)
    return storage


async def events_left(server: RunningServer) -> int:
    row = await storage_of(server).engine.fetch_one(
        f"SELECT COUNT(*) FROM {server.settings.db_table_prefix}events")
    assert row is not None
    return int(row[0])


async def cursor_now(rest: Rest, user: int) -> str:
    reply = await rest.poll(user)
    assert reply.status == 200 and reply.body["events"] == []
    cursor: str = reply.body["cursor"]
    return cursor


async def test_old_events_are_pruned_and_a_stale_cursor_is_told_to_resync(
    make_server: ServerFactory, session: aiohttp.ClientSession,
) -> None:
    async with make_server(EVENT_LOG_RETENTION_S=str(RETENTION_S)) as server:
        rest = Rest(server, session)
        conversation = await server.conversation(1, 2)
        stale = await cursor_now(rest, 1)  # a tab that then slept
        missed = await rest.send(2, conversation, "while 1 slept", "s1")
        await server.advance(RETENTION_S + 1)
        fresh = await cursor_now(rest, 1)  # a tab that polled just now
        kept = await rest.send(2, conversation, "after the retention", "s2")
        assert await events_left(server) == 2
        await server.advance(server.chat.retention.check_every_s)
        assert await events_left(server) == 1

        resync = await rest.poll(1, stale)
        assert resync.status == 200
        assert resync.body == {"resync": True, "cursor": resync.body["cursor"], "events": []}
        assert int(resync.body["cursor"]) >= int(fresh)
        # What the client then does: history since the last message it has.
        history = await rest.get(f"/conversations/{conversation}/messages?since=0", user=1)
        assert [m["text"] for m in history.body["messages"]] == [
            "while 1 slept", "after the retention"]
        assert [m["id"] for m in history.body["messages"]] == [
            missed.body["id"], kept.body["id"]]

        # A cursor that lost nothing is answered as before, resync not said.
        reply = await rest.poll(1, fresh)
        assert reply.status == 200 and "resync" not in reply.body
        assert [e["data"]["text"] for e in reply.body["events"]] == ["after the retention"]
        # and the resync answer's cursor polls on without another resync.
        waiting = asyncio.create_task(rest.poll(1, resync.body["cursor"], wait_s=60))
        feed = server.app[REST_API].feed
        await server.wait_until(lambda: feed.waiting > 0 or waiting.done())
        live = await rest.send(2, conversation, "live", "s3")
        answer = await asyncio.wait_for(waiting, 5)
        assert "resync" not in answer.body
        assert [e["data"]["id"] for e in answer.body["events"]] == [live.body["id"]]


async def test_sends_are_acknowledged_while_the_server_prunes_a_large_backlog(
    make_server: ServerFactory, session: aiohttp.ClientSession,
) -> None:
    async with make_server(EVENT_LOG_RETENTION_S=str(RETENTION_S),
                           RATE_LIMIT_EVENTS="0", RATE_LIMIT_MESSAGES="0") as server:
        conversation, (alice,) = await room(server, 1)
        backlog = 20 * PRUNE_BATCH
        storage = storage_of(server)
        old_ms = int(server.clock.now() * 1000) - 2 * RETENTION_S * 1000
        for start in range(0, backlog, 500):
            await storage.engine.execute(
                f"INSERT INTO {server.settings.db_table_prefix}events (conversation_id, kind, "
                "message_id, user_id, created_at_ms) VALUES "
                + ", ".join("(?, 'read', ?, '1', ?)" for _ in range(500)),
                [v for n in range(500) for v in (conversation, start + n + 1, old_ms)],
            )
        pruner = server.chat.retention
        done = asyncio.Event()
        progress_at_ack: list[int] = []

        async def alice_sends() -> None:
            n = 0
            while not done.is_set():
                ack = await alice.call("message:send", {
                    "conversationId": conversation, "text": f"during {n}", "messageId": n})
                assert ack["status"] == "sent", ack
                progress_at_ack.append(pruner.pruned_events)
                n += 1

        async def time_flows() -> None:
            # The pause passes once the batch before it is done and a send was
            # acknowledged after it (the pause is where sends get the writer; on a
            # busy machine a round trip may outlast it). The server started the
            # pruner; its first look is due now. The clock moves no faster than
            # the batches, so heartbeats stay in step.
            seen = pruner.pruned_events
            server.clock.advance(0)
            while pruner.pruned_events < backlog:
                if pruner.pruned_events != seen and progress_at_ack[-1:] == [pruner.pruned_events]:
                    seen = pruner.pruned_events
                    server.clock.advance(PRUNE_PAUSE_S)
                await asyncio.sleep(0.001)
            done.set()

        await asyncio.wait_for(asyncio.gather(alice_sends(), time_flows()), 120)
        during = sorted({p for p in progress_at_ack if 0 < p < backlog})
        assert len(during) >= backlog // PRUNE_BATCH // 2, during
        row = await storage.engine.fetch_one(
            f"SELECT COUNT(*) FROM {server.settings.db_table_prefix}messages")
        assert row is not None and int(row[0]) == len(progress_at_ack)


async def test_two_nodes_on_one_database_both_prune_and_both_answer_resync(
    make_server: ServerFactory, session: aiohttp.ClientSession,
) -> None:
    """No leader: every node prunes the shared log; a range one deleted costs the
    other nothing, and a cursor pruned by one is answered resync by either."""
    retention = {"EVENT_LOG_RETENTION_S": str(RETENTION_S)}
    async with make_server(SERVER_ID="a", **retention) as node_a, make_server(
        SERVER_ID="b", **retention
    ) as node_b:
        on_a, on_b = Rest(node_a, session), Rest(node_b, session)
        conversation = await node_a.conversation(1, 2)
        stale = await cursor_now(on_a, 1)
        backlog = 4 * PRUNE_BATCH
        old_ms = int(node_a.clock.now() * 1000) - 2 * RETENTION_S * 1000
        await storage_of(node_a).engine.execute(
            f"INSERT INTO {node_a.settings.db_table_prefix}events (conversation_id, kind, "
            "message_id, user_id, created_at_ms) VALUES "
            + ", ".join("(?, 'read', ?, '1', ?)" for _ in range(backlog)),
            [v for n in range(backlog) for v in (conversation, n + 1, old_ms)],
        )
        await on_b.send(2, conversation, "now", "n1")
        for _ in range(2 * backlog // PRUNE_BATCH):  # both nodes look, batch after batch
            await asyncio.gather(node_a.advance(PRUNE_PAUSE_S), node_b.advance(PRUNE_PAUSE_S))
        pruned = (node_a.chat.retention.pruned_events, node_b.chat.retention.pruned_events)
        # (on MariaDB the node that runs second often finds its range gone and
        # waits for its next check: each row is deleted once either way)
        assert sum(pruned) == backlog, pruned
        assert await events_left(node_a) == 1
        for rest in (on_a, on_b):
            reply = await rest.poll(1, stale)
            assert reply.body["resync"] is True and reply.body["events"] == []
