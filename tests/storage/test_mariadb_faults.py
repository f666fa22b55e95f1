"""The server on MariaDB, under the faults a real network and database produce.

Each test starts the real server with DATABASE_URL pointing at a TCP proxy in
front of MariaDB (tests/tcp_proxy.py, used the way Toxiproxy is), with real
Socket.IO clients, then breaks the path: refused connections, a blackhole (a
hung network), latency, a lost COMMIT answer, pooled connections that die
(killed by the database, or silently gone). Start-up against a hung database
and a restart on the same tables close the file. What is stored is checked
over a separate, direct connection.

DB timeouts are real time (asyncio), so the deadlines here are small:
DB_TIMEOUT_MS is 500, and DB_CONNECT_TIMEOUT_MS in the start-up test. A failure must come no later
than the deadline plus MARGIN_S (scheduling and the Socket.IO round trip).
The injected clock is left alone: no protocol timer matters here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pymysql
import pytest

from ecigdis_ws.errors import StorageUnavailable
from ecigdis_ws.storage.mariadb import MariaDbTarget
from ecigdis_ws.storage.sql import SqlStorage
from tests.backends import connect, unique_prefix
from tests.support import ChatClient, RunningServer, running_server
from tests.tcp_proxy import CutMode, TcpProxy
from tests.transport.conftest import room

pytestmark = pytest.mark.backends("mariadb")
log = logging.getLogger(__name__)

DB_TIMEOUT_S = 0.5
# The start-up test's own: a start against a hung database fails this soon.
DB_CONNECT_TIMEOUT_S = 0.5
# Every other server's: its pool's first handshakes through the proxy, before any
# fault, once took more than 0.5 s on a loaded machine (a set-up error, not a
# finding). A send's answer is bounded by DB_TIMEOUT_MS whatever this is.
RIG_CONNECT_TIMEOUT_S = 2.0
MARGIN_S = 0.3
# A reply that does not touch the database comes at once, even while a send waits.
PROMPT_S = 0.2
# Longer than a DB_TIMEOUT_MS round trip: every query waits out the deadline.
SLOWER_THAN_DEADLINE_S = 0.6
FAULT_ENV = {
    "DB_TIMEOUT_MS": str(int(DB_TIMEOUT_S * 1000)),
    "DB_CONNECT_TIMEOUT_MS": str(int(RIG_CONNECT_TIMEOUT_S * 1000)),
    "DB_POOL_MIN": "1",
    "RATE_LIMIT_MESSAGES": "0",
    "RATE_LIMIT_EVENTS": "0",
}
UNAVAILABLE = {"code": "UNAVAILABLE", "message": "database unavailable, try again"}
CUT_MODES: tuple[CutMode, ...] = ("blackhole", "refuse")
ER_NO_SUCH_THREAD = 1094

T = TypeVar("T")


@dataclass(frozen=True)
class Timed:
    """An answer and how long it took, in seconds of real time."""

    value: Any
    seconds: float


async def timed(answer: Awaitable[T]) -> Timed:
    started = time.monotonic()
    value = await answer
    return Timed(value, time.monotonic() - started)


@dataclass(frozen=True)
class Database:
    """This test's tables in this run's MariaDB database, read over a direct connection."""

    server_url: str  # mysql://… of the MariaDB server itself (no proxy)
    name: str
    prefix: str

    def url(self, proxy: TcpProxy | None = None) -> str:
        """DATABASE_URL for the server: straight to MariaDB, or through `proxy`."""
        parts = urlsplit(self.server_url)
        netloc = parts.netloc
        if proxy is not None:
            userinfo, _, _ = parts.netloc.rpartition("@")
            address = f"{proxy.listen_host}:{proxy.port}"
            netloc = f"{userinfo}@{address}" if userinfo else address
        return urlunsplit((parts.scheme, netloc, "/" + self.name, "", ""))

    def env(self, proxy: TcpProxy | None = None, **extra: str) -> dict[str, str]:
        return {
            **FAULT_ENV, "DATABASE_URL": self.url(proxy), "DB_TABLE_PREFIX": self.prefix, **extra
        }

    async def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            conn = connect(self.server_url, self.name)
            try:
                with conn.cursor() as cursor:
                    cursor.execute(sql.replace("{p}", self.prefix), params)
                    return [tuple(row) for row in cursor.fetchall()]
            finally:
                conn.close()

        return await asyncio.to_thread(run)

    async def messages(self, conversation: int) -> list[tuple[int, str]]:
        """(server id, client messageId) of every stored message, in id order."""
        rows = await self.rows(
            "SELECT id, client_message_id FROM {p}messages WHERE conversation_id = %s "
            "ORDER BY id", conversation,
        )
        return [(int(row[0]), str(row[1])) for row in rows]

    async def copies_of(self, conversation: int, message_id: str) -> int:
        return Counter(client_id for _, client_id in await self.messages(conversation))[
            message_id
        ]

    async def connection_ids(self) -> set[int]:
        """MariaDB thread ids of the connections now open on this run's database."""
        rows = await self.rows_unbound(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s", self.name
        )
        return {int(row[0]) for row in rows}

    async def kill(self, thread_ids: set[int]) -> int:
        """KILL these connections from an admin connection; return how many were killed."""

        def run() -> int:
            admin = connect(self.server_url)
            killed = 0
            try:
                with admin.cursor() as cursor:
                    for thread_id in sorted(thread_ids):
                        try:
                            cursor.execute(f"KILL CONNECTION {thread_id:d}")
                            killed += 1
                        except pymysql.err.OperationalError as exc:
                            if exc.args[0] != ER_NO_SUCH_THREAD:  # it closed meanwhile
                                raise
            finally:
                admin.close()
            return killed

        return await asyncio.to_thread(run)

    async def rows_unbound(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """A query over a connection to no database (so it is not in DB = name)."""

        def run() -> list[tuple[Any, ...]]:
            admin = connect(self.server_url)
            try:
                with admin.cursor() as cursor:
                    cursor.execute(sql, params)
                    return [tuple(row) for row in cursor.fetchall()]
            finally:
                admin.close()

        return await asyncio.to_thread(run)


@dataclass
class Rig:
    """A server on MariaDB through `proxy`; alice and bob share a conversation, carol not."""

    proxy: TcpProxy
    server: RunningServer
    database: Database
    conversation: int
    alice: ChatClient
    bob: ChatClient
    carol: ChatClient

    async def send(self, message_id: str, text: str = "hello") -> Timed:
        """alice sends; the reply is bounded by the client's call timeout."""
        return await timed(self.alice.call("message:send", {
            "conversationId": self.conversation, "text": text, "messageId": message_id,
        }))

    async def health(self) -> Timed:
        """GET /health as (status, body), bounded by a client timeout."""

        async def get() -> tuple[int, Any]:
            limit = aiohttp.ClientTimeout(total=DB_TIMEOUT_S * 4)
            async with aiohttp.ClientSession(timeout=limit) as http, http.get(
                f"{self.server.url}/health"
            ) as response:
                return response.status, await response.json()

        return await timed(get())

    async def failed_ack(self, message_id: str) -> dict[str, Any]:
        """The message:ack event alice got for a failed send of `message_id`."""
        [ack] = await self.alice.wait_for(
            "message:ack",
            lambda a: a["messageId"] == message_id and a["status"] == "failed",
            within=1.0,
        )
        return dict(ack)

    async def nothing_fanned_out_to_bob(self, message_id: str) -> bool:
        """True when bob got no message:new for `message_id`.

        alice then leaves the room: bob's user:left comes after anything fanned
        out for her earlier events (one socket's events are handled in order),
        so once it has arrived a message:new for the send would have too.
        """
        assert (await self.alice.call(
            "conversation:leave", {"conversationId": self.conversation}
        ))["ok"]
        await self.bob.wait_for("user:left", within=1.0)
        return all(m["messageId"] != message_id for m in self.bob.received("message:new"))


@asynccontextmanager
async def rig_on(
    tmp_path: Path, database: Database, proxy: TcpProxy, **env: str
) -> AsyncIterator[Rig]:
    async with running_server(tmp_path, **database.env(proxy, **env)) as server:
        conversation, (alice, bob) = await room(server, 1, 2)
        carol = await server.client(3)
        try:
            yield Rig(proxy, server, database, conversation, alice, bob, carol)
        finally:
            # Heal the path first, so shutting down (last-seen writes, closing the
            # pool) does not wait on a fault.
            await proxy.restore()


@pytest.fixture
def database(backend_name: str, mariadb_url: str) -> Database:
    assert backend_name == "mariadb"
    return Database(mariadb_url, MariaDbTarget.from_url(mariadb_url).database, unique_prefix())


@pytest.fixture
async def proxy(database: Database) -> AsyncIterator[TcpProxy]:
    target = MariaDbTarget.from_url(database.server_url)
    async with TcpProxy(upstream_port=target.port, upstream_host=target.host) as started:
        yield started


@pytest.fixture
async def rig(tmp_path: Path, database: Database, proxy: TcpProxy) -> AsyncIterator[Rig]:
    async with rig_on(tmp_path, database, proxy) as started:
        assert (await started.send("before the fault")).value["ok"]  # traffic is flowing
        yield started


def within_deadline(seconds: float) -> bool:
    return seconds <= DB_TIMEOUT_S + MARGIN_S


# -- the database goes away: refused or blackholed -----------------------------------


@pytest.mark.parametrize("mode", CUT_MODES)
async def test_send_to_a_cut_database_answers_unavailable_within_the_deadline(
    rig: Rig, mode: CutMode
) -> None:
    await rig.proxy.cut(mode)
    answer = await rig.send("m-cut")
    log.info("%s: message:send answered UNAVAILABLE after %.3f s", mode, answer.seconds)
    assert answer.value == {"ok": False, "error": UNAVAILABLE}
    assert within_deadline(answer.seconds)
    if mode == "blackhole":
        # Nothing answers, so only the deadline ends the wait.
        assert answer.seconds >= DB_TIMEOUT_S * 0.95


@pytest.mark.parametrize("mode", CUT_MODES)
async def test_send_to_a_cut_database_gets_a_failed_ack_event(rig: Rig, mode: CutMode) -> None:
    await rig.proxy.cut(mode)
    await rig.send("m-cut")
    assert await rig.failed_ack("m-cut") == {
        "messageId": "m-cut", "status": "failed", "error": UNAVAILABLE,
    }


@pytest.mark.parametrize("mode", CUT_MODES)
async def test_send_to_a_cut_database_is_not_fanned_out(rig: Rig, mode: CutMode) -> None:
    await rig.proxy.cut(mode)
    assert not (await rig.send("m-cut")).value["ok"]
    assert await rig.nothing_fanned_out_to_bob("m-cut")


@pytest.mark.parametrize("mode", CUT_MODES)
async def test_send_to_a_cut_database_is_not_stored(rig: Rig, mode: CutMode) -> None:
    await rig.proxy.cut(mode)
    assert not (await rig.send("m-cut")).value["ok"]
    await rig.proxy.restore()
    assert await rig.database.copies_of(rig.conversation, "m-cut") == 0
    assert await rig.database.copies_of(rig.conversation, "before the fault") == 1


async def test_presence_request_answers_at_once_while_a_send_waits_on_a_blackhole(
    rig: Rig,
) -> None:
    await rig.proxy.cut("blackhole")
    send = asyncio.ensure_future(rig.send("m-cut"))
    storage = rig.server.chat.storage
    assert isinstance(storage, SqlStorage)
    await rig.server.wait_until(lambda: storage.messages_being_written == 1)  # on the database
    presence = await timed(rig.carol.call("presence:request"))
    log.info("presence:request answered in %.3f s during a blackholed send", presence.seconds)
    assert not send.done()
    assert presence.value["ok"] and presence.value["count"] == 3
    assert presence.seconds <= PROMPT_S
    assert not (await send).value["ok"]


@pytest.mark.parametrize("mode", CUT_MODES)
async def test_health_reports_the_cut_database_disconnected_within_the_deadline(
    rig: Rig, mode: CutMode
) -> None:
    await rig.proxy.cut(mode)
    answer = await rig.health()
    log.info("%s: /health answered %s after %.3f s", mode, answer.value[0], answer.seconds)
    status, body = answer.value
    assert status == 503
    assert body["status"] == "degraded" and body["database"] == "disconnected"
    assert within_deadline(answer.seconds)


# -- a slow database ------------------------------------------------------------------


async def test_send_to_a_database_slower_than_the_deadline_answers_unavailable_in_time(
    rig: Rig,
) -> None:
    rig.proxy.delay(SLOWER_THAN_DEADLINE_S)
    answer = await rig.send("m-slow")
    log.info("delay %.1f s: message:send answered after %.3f s",
             SLOWER_THAN_DEADLINE_S, answer.seconds)
    assert answer.value == {"ok": False, "error": UNAVAILABLE}
    assert answer.seconds >= DB_TIMEOUT_S * 0.95
    assert within_deadline(answer.seconds)


async def test_sends_succeed_again_once_the_database_is_fast_again(rig: Rig) -> None:
    rig.proxy.delay(SLOWER_THAN_DEADLINE_S)
    assert not (await rig.send("m-slow")).value["ok"]
    rig.proxy.delay(0)
    answers = [await rig.send(f"m-fast-{n}") for n in range(3)]
    assert [a.value["status"] for a in answers] == ["sent"] * 3
    stored = await rig.database.messages(rig.conversation)
    assert [client_id for _, client_id in stored] == [
        "before the fault", "m-fast-0", "m-fast-1", "m-fast-2",
    ]


async def test_send_slower_than_the_deadline_mid_transaction_is_not_stored(rig: Rig) -> None:
    # Each chunk held 0.15 s: the membership check (one round trip) passes, the
    # store transaction (BEGIN, INSERT, COMMIT) runs out of time after the INSERT
    # reached the database. One deadline covers the whole send.
    rig.proxy.delay(0.15)
    answer = await rig.send("m-mid")
    log.info("delay 0.15 s: message:send answered after %.3f s", answer.seconds)
    assert answer.value == {"ok": False, "error": UNAVAILABLE}
    assert answer.seconds <= DB_TIMEOUT_S + MARGIN_S
    await rig.proxy.restore()
    assert await rig.database.copies_of(rig.conversation, "m-mid") == 0


# -- recovery -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", CUT_MODES)
async def test_after_an_outage_every_message_acknowledged_sent_is_stored_once(
    rig: Rig, mode: CutMode
) -> None:
    for n in range(3):
        assert (await rig.send(f"before-{n}")).value["ok"]
    await rig.proxy.cut(mode)
    for n in range(2):
        assert not (await rig.send(f"during-{n}")).value["ok"]
    await rig.proxy.restore()
    for n in range(3):
        assert (await rig.send(f"after-{n}")).value["ok"]
    # The client's retries of what failed, with the same messageIds.
    for n in range(2):
        assert (await rig.send(f"during-{n}")).value["ok"]

    sent = [(a["id"], a["messageId"]) for a in rig.alice.received("message:ack")
            if a["status"] == "sent"]
    assert len(sent) == 1 + 3 + 3 + 2
    assert await rig.database.messages(rig.conversation) == sorted(sent)


@pytest.mark.parametrize("mode", CUT_MODES)
async def test_after_an_outage_the_first_send_succeeds_without_a_restart(
    rig: Rig, mode: CutMode
) -> None:
    await rig.proxy.cut(mode)
    assert not (await rig.send("during")).value["ok"]
    await rig.proxy.restore()
    answer = await rig.send("after")
    log.info("%s: first send after restore() answered %s in %.3f s",
             mode, answer.value.get("status"), answer.seconds)
    assert answer.value["ok"] and answer.value["status"] == "sent"
    assert within_deadline(answer.seconds)


@pytest.mark.parametrize("mode", CUT_MODES)
async def test_after_an_outage_health_is_200_connected(rig: Rig, mode: CutMode) -> None:
    await rig.proxy.cut(mode)
    assert (await rig.health()).value[0] == 503
    await rig.proxy.restore()
    answer = await rig.health()
    status, body = answer.value
    assert status == 200
    assert body["status"] == "ok" and body["database"] == "connected"


@pytest.mark.parametrize("mode", CUT_MODES)
async def test_after_an_outage_messages_reach_the_other_member_live(
    rig: Rig, mode: CutMode
) -> None:
    await rig.proxy.cut(mode)
    assert not (await rig.send("during")).value["ok"]
    await rig.proxy.restore()
    ack = (await rig.send("after")).value
    [new] = await rig.bob.wait_for("message:new", lambda m: m["messageId"] == "after")
    assert new["id"] == ack["id"]


# -- the answer to COMMIT is lost ----------------------------------------------------


async def test_send_whose_commit_answer_is_lost_is_found_on_retry(rig: Rig) -> None:
    # The COMMIT reaches MariaDB and is applied; its answer never comes back.
    # docs/protocol.md: reported failed, then found on retry as a duplicate.
    rig.proxy.stall(b"COMMIT", forward_trigger=True)
    assert (await rig.send("m-commit")).value == {"ok": False, "error": UNAVAILABLE}
    await rig.proxy.restore()
    retry = (await rig.send("m-commit")).value
    assert retry["ok"] and retry["status"] == "sent" and retry["duplicate"] is True
    stored = await rig.database.messages(rig.conversation)
    assert [row for row in stored if row[1] == "m-commit"] == [(retry["id"], "m-commit")]


async def test_send_whose_commit_answer_is_lost_reaches_the_other_member_once_retried(
    rig: Rig,
) -> None:
    rig.proxy.stall(b"COMMIT", forward_trigger=True)
    assert not (await rig.send("m-commit")).value["ok"]
    await rig.proxy.restore()
    assert (await rig.send("m-commit")).value["ok"]
    await rig.bob.wait_for("message:new", lambda m: m["messageId"] == "m-commit", within=1.0)


# -- connections that die in the pool -----------------------------------------------


async def test_send_right_after_the_database_killed_the_pooled_connections_succeeds(
    tmp_path: Path, database: Database
) -> None:
    # Straight to MariaDB: KILL closes the sockets before it returns, so the
    # server can know those connections are dead and must not hand one out.
    before = await database.connection_ids()
    async with running_server(tmp_path, **database.env(DB_POOL_MIN="2")) as server:
        conversation, (alice, _) = await room(server, 1, 2)
        pooled = await database.connection_ids() - before
        assert len(pooled) >= 2
        assert await database.kill(pooled) == len(pooled)
        answers = []
        for n in range(3):  # at once: no waiting for the server to notice
            answers.append(await alice.call("message:send", {
                "conversationId": conversation, "text": "hi", "messageId": f"after-{n}",
            }))
        assert [answer.get("status") for answer in answers] == ["sent"] * 3
        now_open = await database.connection_ids()
        assert now_open and not now_open & pooled  # replaced by new connections


async def test_silently_dead_pooled_connections_each_fail_at_most_one_send(
    tmp_path: Path, database: Database, proxy: TcpProxy
) -> None:
    # The database end is gone but the server is not told (failover, NAT): a
    # connection can only be found dead by using it. Each may cost the one call
    # that found it (UNAVAILABLE); it must then be dropped, not pooled again.
    async with rig_on(tmp_path, database, proxy, DB_POOL_MIN="2") as rig:
        dead = await proxy.sever()
        assert dead >= 2
        answers = [(await rig.send(f"after-{n}")).value for n in range(dead + 2)]
        failed = [a for a in answers if not a["ok"]]
        log.info("%d silently dead connections: %d of %d sends failed",
                 dead, len(failed), len(answers))
        assert all(a["error"] == UNAVAILABLE for a in failed)
        assert len(failed) <= dead
        assert answers[len(failed):] == [a for a in answers if a["ok"]]  # failures come first
        assert [a["messageId"] for a in answers[len(failed):]] == [
            f"after-{n}" for n in range(len(failed), dead + 2)
        ]


# -- server start-up -----------------------------------------------------------------


async def test_server_start_against_a_blackholed_database_fails_within_the_timeout(
    tmp_path: Path, database: Database, proxy: TcpProxy
) -> None:
    await proxy.cut("blackhole")
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        async with asyncio.timeout(DB_CONNECT_TIMEOUT_S * 6), running_server(
            tmp_path, **database.env(
                proxy, DB_CONNECT_TIMEOUT_MS=str(int(DB_CONNECT_TIMEOUT_S * 1000)))
        ):
            pass
    elapsed = time.monotonic() - started
    log.info("start-up against a blackhole failed after %.3f s", elapsed)
    assert elapsed <= DB_CONNECT_TIMEOUT_S + MARGIN_S


# -- restart --------------------------------------------------------------------------


async def test_restarted_server_keeps_messages_reactions_and_read_positions(
    tmp_path: Path, database: Database
) -> None:
    async with running_server(tmp_path, **database.env()) as first:
        conversation, (alice, bob) = await room(first, 1, 2)
        acks = []
        for n in range(3):
            acks.append(await alice.call("message:send", {
                "conversationId": conversation, "text": f"text {n}", "messageId": f"m{n}",
            }))
        assert all(ack["ok"] for ack in acks)
        reacted = await bob.call("message:react", {
            "conversationId": conversation, "messageId": acks[0]["id"], "emoji": "👍",
        })
        assert reacted == {"ok": True, "action": "added"}
        read = await bob.call("message:read", {
            "conversationId": conversation, "messageId": acks[1]["id"],
        })
        assert read == {"ok": True, "advanced": True}

    async with running_server(tmp_path, **database.env()) as second:
        bob = await second.client(2)
        joined = await bob.call("conversation:join", {"conversationId": conversation, "since": 0})
        assert joined["ok"]
        # The replay is sent before the join is answered.
        assert [(m["id"], m["messageId"], m["text"]) for m in bob.received("message:new")] == [
            (ack["id"], f"m{n}", f"text {n}") for n, ack in enumerate(acks)
        ]
        assert await second.chat.storage.reactions.reactions(acks[0]["id"]) == [(2, "👍")]
        assert await second.chat.storage.receipts.last_read(conversation, 2) == acks[1]["id"]
