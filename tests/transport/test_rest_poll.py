"""GET /api/messenger/poll through the real server, on both backends: a client
with no socket gets every message, receipt and reaction of its conversations,
in order, woken by the fan-out, across restarts and across nodes."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest
import redis

from ecigdis_ws.services.event_feed import POLL_PAGE, RECHECK_S, SETTLE_MARGIN_MS, EventFeed
from ecigdis_ws.storage.sql import SqlStorage
from ecigdis_ws.transport.rest_routes import REST_API
from tests.needs import unavailable
from tests.support import RunningServer
from tests.transport.conftest import room
from tests.transport.rest_support import Reply, Rest

HOLD_S = 25.0  # LONG_POLL_TIMEOUT_MS's default


async def start_poll(rest: Rest, user: int, cursor: str) -> asyncio.Task[Reply]:
    """A poll request, in flight until the server answers it, once it is waiting."""
    feed = _feed(rest.server)
    before = feed.waiting
    task = asyncio.create_task(rest.poll(user, cursor, wait_s=60))
    await rest.server.wait_until(lambda: feed.waiting > before or task.done())
    return task


def _feed(server: RunningServer) -> EventFeed:
    return server.app[REST_API].feed


async def assert_still_held(server: RunningServer, poll: asyncio.Task[Reply]) -> None:
    """The server has handled everything that happened so far (each wake-up read
    to the end) and still holds the one poll waiting on it. The server's clock is
    a ManualClock, so nothing times out by itself meanwhile."""
    feed = _feed(server)
    await server.wait_until(lambda: feed.all_asleep or poll.done())
    assert not poll.done()
    assert feed.waiting == 1


async def cursor_now(rest: Rest, user: int) -> str:
    reply = await rest.poll(user)
    assert reply.status == 200 and reply.body["events"] == []
    cursor: str = reply.body["cursor"]
    return cursor


async def test_a_poll_without_a_cursor_answers_at_once_with_the_present(rest: Rest) -> None:
    conversation = await rest.server.conversation(1, 2)
    await rest.send(2, conversation, "before", "b1")
    cursor = await cursor_now(rest, 1)
    sent = await rest.send(2, conversation, "after", "a1")
    reply = await rest.poll(1, cursor)
    assert [e["data"]["id"] for e in reply.body["events"]] == [sent.body["id"]]


async def test_a_socket_send_wakes_a_waiting_long_poll(rest: Rest) -> None:
    conversation, (alice, _) = await room(rest.server, 1, 2)
    cursor = await cursor_now(rest, 2)
    waiting = await start_poll(rest, 2, cursor)
    await assert_still_held(rest.server, waiting)
    ack = await alice.call("message:send",
                           {"conversationId": conversation, "text": "hi", "messageId": 5})
    reply = await asyncio.wait_for(waiting, 5)  # the clock never moved: woken, not timed
    assert reply.status == 200
    [event] = reply.body["events"]
    assert event["event"] == "message:new"
    assert event["data"] == {
        "id": ack["id"], "messageId": "5", "conversationId": conversation, "userId": 1,
        "senderName": "user1", "text": "hi", "createdAt": ack["createdAt"], "reactions": [],
    }
    assert int(reply.body["cursor"]) > int(cursor)


async def test_the_poll_returns_messages_receipts_and_reactions_in_their_order(
    rest: Rest,
) -> None:
    conversation, (alice, bob) = await room(rest.server, 1, 2)
    cursor = await cursor_now(rest, 1)
    first = await alice.call("message:send",
                             {"conversationId": conversation, "text": "one", "messageId": "o1"})
    second = await rest.send(2, conversation, "two", "t2")
    await bob.call("message:read", {"conversationId": conversation, "messageId": first["id"]})
    react = {"conversationId": conversation, "messageId": first["id"], "emoji": "👍"}
    await bob.call("message:react", react)
    await rest.post(f"/conversations/{conversation}/read", user=1,
                    json={"messageId": second.body["id"]})
    await bob.call("message:react", react)

    reply = await rest.poll(1, cursor)
    events = reply.body["events"]
    assert [e["event"] for e in events] == [
        "message:new", "message:new", "message:read-receipt", "message:reaction",
        "message:read-receipt", "message:reaction",
    ]
    assert [e["data"]["id"] for e in events[:2]] == [first["id"], second.body["id"]]
    # The payloads are the socket events' own.
    # (user 1's own socket hears user 1's REST receipt too: it came from no socket)
    receipts = await alice.wait_for("message:read-receipt", count=2)
    assert [events[2]["data"], events[4]["data"]] == receipts
    assert [e["data"] for e in events if e["event"] == "message:reaction"] == alice.received(
        "message:reaction")
    assert [e["data"]["action"] for e in events if e["event"] == "message:reaction"] == [
        "added", "removed"]
    assert events[4]["data"]["userId"] == 1  # user 1's own receipt, made over REST


async def test_polling_again_from_the_returned_cursor_repeats_nothing(rest: Rest) -> None:
    conversation = await rest.server.conversation(1, 2)
    cursor = await cursor_now(rest, 1)
    await rest.send(2, conversation, "one", "x1")
    first = await rest.poll(1, cursor)
    assert len(first.body["events"]) == 1
    waiting = await start_poll(rest, 1, first.body["cursor"])
    await assert_still_held(rest.server, waiting)
    await rest.send(2, conversation, "two", "x2")
    second = await asyncio.wait_for(waiting, 5)
    assert [e["data"]["text"] for e in second.body["events"]] == ["two"]


async def test_a_held_poll_answers_empty_when_the_hold_time_runs_out(rest: Rest) -> None:
    await rest.server.conversation(1, 2)
    cursor = await cursor_now(rest, 1)
    waiting = await start_poll(rest, 1, cursor)
    await rest.server.advance(HOLD_S - 1)
    await assert_still_held(rest.server, waiting)
    await rest.server.advance(1)
    reply = await asyncio.wait_for(waiting, 5)
    assert reply.status == 200
    assert (reply.body["cursor"], reply.body["events"]) == (cursor, [])


async def test_the_hold_time_is_the_long_poll_timeout_setting(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
    session: aiohttp.ClientSession,
) -> None:
    async with make_server(LONG_POLL_TIMEOUT_MS="3000") as server:
        rest = Rest(server, session)
        cursor = await cursor_now(rest, 1)
        waiting = await start_poll(rest, 1, cursor)
        await server.advance(2.9)
        await assert_still_held(server, waiting)
        await server.advance(0.1)
        assert (await asyncio.wait_for(waiting, 5)).body["events"] == []


async def test_a_poll_is_not_answered_with_other_peoples_conversations(rest: Rest) -> None:
    theirs = await rest.server.conversation(1, 2)
    mine = await rest.server.conversation(1, 3)
    cursor = await cursor_now(rest, 3)
    waiting = await start_poll(rest, 3, cursor)
    await rest.send(1, theirs, "not for 3", "n1")
    await assert_still_held(rest.server, waiting)
    await rest.send(1, mine, "for 3", "n2")
    reply = await asyncio.wait_for(waiting, 5)
    assert [e["data"]["text"] for e in reply.body["events"]] == ["for 3"]


async def test_a_new_membership_is_noticed_by_a_waiting_poll_within_the_recheck(
    rest: Rest,
) -> None:
    conversation = await rest.server.conversation(1)
    cursor = await cursor_now(rest, 2)
    waiting = await start_poll(rest, 2, cursor)
    # Added behind the server's back (the CLI, the portal's database): no wake-up.
    await rest.server.chat.storage.conversations.add_member(conversation, 2, 0)
    await rest.send(1, conversation, "welcome", "w1")
    await assert_still_held(rest.server, waiting)
    await rest.server.advance(RECHECK_S)
    reply = await asyncio.wait_for(waiting, 5)
    assert [e["data"]["text"] for e in reply.body["events"]] == ["welcome"]


async def test_more_events_than_one_answer_holds_come_in_full_answers(rest: Rest) -> None:
    conversation = await rest.server.conversation(1, 2)
    cursor = await cursor_now(rest, 1)
    storage = rest.server.chat.storage
    for n in range(POLL_PAGE + 3):
        await storage.messages.store_message(conversation, 2, "user2", f"bulk{n}", f"m{n}", n)
    first = await rest.poll(1, cursor)
    assert len(first.body["events"]) == POLL_PAGE
    second = await rest.poll(1, first.body["cursor"])
    texts = [e["data"]["text"] for e in first.body["events"] + second.body["events"]]
    assert texts == [f"m{n}" for n in range(POLL_PAGE + 3)]


async def test_a_cursor_ahead_of_the_event_log_is_invalid(rest: Rest) -> None:
    reply = await rest.poll(1, "999999999")
    assert (reply.status, reply.code) == (400, "INVALID_PAYLOAD")


async def test_a_cursor_stays_valid_across_a_server_restart(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
    session: aiohttp.ClientSession,
) -> None:
    async with make_server() as first:
        rest = Rest(first, session)
        conversation = await first.conversation(1, 2)
        cursor = await cursor_now(rest, 1)
        sent_before = await rest.send(2, conversation, "while 1 was away", "r1")
    async with make_server() as second:
        rest = Rest(second, session)
        sent_after = await rest.send(2, conversation, "after the restart", "r2")
        reply = await rest.poll(1, cursor)
        assert [e["data"]["id"] for e in reply.body["events"]] == [
            sent_before.body["id"], sent_after.body["id"]]
        waiting = await start_poll(rest, 1, reply.body["cursor"])
        await rest.send(2, conversation, "live", "r3")
        assert [e["data"]["text"] for e in (await waiting).body["events"]] == ["live"]


async def test_shutting_down_answers_waiting_polls_at_once(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
    session: aiohttp.ClientSession,
) -> None:
    async with make_server() as server:
        rest = Rest(server, session)
        cursor = await cursor_now(rest, 1)
        waiting = await start_poll(rest, 1, cursor)
    reply = await asyncio.wait_for(waiting, 5)
    assert reply.status == 200 and reply.body["events"] == []


# -- commit order on MariaDB ------------------------------------------------------------


async def hold_open(
    storage: SqlStorage, conversation: int, message_id: int, now_ms: int, commit: bool
) -> tuple[asyncio.Task[None], asyncio.Event]:
    """A transaction that has appended an event (so holds its id) and waits to end."""
    inserted, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with storage.engine.transaction() as tx:
            await storage.append_event(tx, "read", conversation, message_id, 2, now_ms)
            inserted.set()
            await release.wait()
            if not commit:
                raise RuntimeError("rolled back on purpose")

    task = asyncio.create_task(writer())
    await inserted.wait()
    return task, release


async def append_committed(storage: SqlStorage, conversation: int, message_id: int,
                           now_ms: int) -> None:
    async with storage.engine.transaction() as tx:
        await storage.append_event(tx, "read", conversation, message_id, 2, now_ms)


@pytest.mark.backends("mariadb")
async def test_an_event_committed_after_a_later_one_is_not_skipped(rest: Rest) -> None:
    """Autoincrement ids are handed out at INSERT, not at COMMIT: a poll must
    not move its cursor past an id whose transaction is still open."""
    server = rest.server
    conversation = await server.conversation(1, 2)
    cursor = await cursor_now(rest, 1)
    storage = server.chat.storage
    assert isinstance(storage, SqlStorage)
    now_ms = int(server.clock.now() * 1000)
    slow, release = await hold_open(storage, conversation, 1, now_ms, commit=True)
    try:
        await append_committed(storage, conversation, 2, now_ms)  # a later id, committed first
        waiting = await start_poll(rest, 1, cursor)
        await server.advance(RECHECK_S)  # re-reads the log: the later id is there, unsettled
        await assert_still_held(server, waiting)
    finally:
        release.set()
        await slow
    await server.advance(RECHECK_S)
    reply = await asyncio.wait_for(waiting, 5)
    assert [e["data"]["messageId"] for e in reply.body["events"]] == [1, 2]


@pytest.mark.backends("mariadb")
async def test_an_id_rolled_back_is_passed_over_once_it_is_settled(rest: Rest) -> None:
    server = rest.server
    conversation = await server.conversation(1, 2)
    cursor = await cursor_now(rest, 1)
    storage = server.chat.storage
    assert isinstance(storage, SqlStorage)
    now_ms = int(server.clock.now() * 1000)
    doomed, release = await hold_open(storage, conversation, 1, now_ms, commit=False)
    try:
        await append_committed(storage, conversation, 2, now_ms)
    finally:
        release.set()
        with pytest.raises(RuntimeError):
            await doomed
    waiting = await start_poll(rest, 1, cursor)
    settle_s = (server.settings.db_timeout_ms + SETTLE_MARGIN_MS) / 1000
    await server.advance(settle_s - RECHECK_S)
    await assert_still_held(server, waiting)  # the missing id might still commit
    await server.advance(RECHECK_S)
    reply = await asyncio.wait_for(waiting, 5)
    assert [e["data"]["messageId"] for e in reply.body["events"]] == [2]


# -- several nodes ----------------------------------------------------------------------


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        message = f"Redis at {url} is not reachable ({exc}); set TEST_REDIS_URL"
        unavailable(message)
    return url


async def test_a_send_on_one_node_wakes_a_poll_waiting_on_another(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
    session: aiohttp.ClientSession,
    redis_url: str,
) -> None:
    cluster = {"REDIS_URL": redis_url, "REDIS_KEY_PREFIX": f"rest-{secrets.token_hex(4)}"}
    async with make_server(SERVER_ID="a", **cluster) as node_a, make_server(
        SERVER_ID="b", **cluster
    ) as node_b:
        on_a, on_b = Rest(node_a, session), Rest(node_b, session)
        conversation, (alice,) = await room(node_a, 1)
        await node_a.chat.storage.conversations.add_member(conversation, 2, 0)
        cursor = await cursor_now(on_b, 2)
        waiting = await start_poll(on_b, 2, cursor)
        await assert_still_held(node_b, waiting)
        ack = await alice.call("message:send",
                               {"conversationId": conversation, "text": "via a", "messageId": 1})
        reply = await asyncio.wait_for(waiting, 5)  # neither clock moved: Redis woke it
        assert [e["data"]["id"] for e in reply.body["events"]] == [ack["id"]]
        # and the other way round: a REST send on b reaches the socket on a
        sent = await on_b.send(2, conversation, "via b", "b1")
        [new] = await alice.wait_for("message:new")
        assert new["id"] == sent.body["id"]
        assert (await on_a.poll(1, reply.body["cursor"])).body["events"][0]["data"]["id"] == (
            sent.body["id"])
