"""The hot storage paths stay fast on a MariaDB table of a million messages.

A module fixture migrates this file's own tables (its own DB_TABLE_PREFIX in the
run's database), then generates the data on the server with the Sequence engine:
2,000 conversations of 10 members each (5,000 users) and 1,000,000 messages
spread round-robin over the conversations (500 each, interleaved as in real
life), then runs ANALYZE TABLE. Nothing goes through the socket.

Each hot path is then run through the real Storage methods, REPETITIONS calls
after WARM_UP calls, its results checked, and its median and p95 printed. What
is asserted about speed is the plan, not the clock: each hot query is EXPLAINed
(the SQL is recorded from SqlStorage itself: an engine wrapper keeps every
statement it is sent, so the plan checked is the plan of the statement the
server really runs) and must read by an index. A wall-clock budget failed
whenever the shared machine was busy; speed is measured in the benchmark.

    .venv/bin/pytest tests/storage/test_mariadb_scale.py -s    # prints the figures
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pymysql
import pytest

from ecigdis_ws.domain import UserId
from ecigdis_ws.settings import Settings, load_settings
from ecigdis_ws.storage.engine import Cursorish, Dialect, Engine, Params, Row
from ecigdis_ws.storage.factory import open_storage
from ecigdis_ws.storage.mariadb import MariaDbTarget
from ecigdis_ws.storage.mariadb import _mysql as mysql_placeholders
from ecigdis_ws.storage.migrations import MIGRATIONS
from ecigdis_ws.storage.sql import SqlStorage
from tests.backends import connect, unique_prefix

pytestmark = pytest.mark.backends("mariadb")

MESSAGES = 1_000_000
CONVERSATIONS = 2_000
MEMBERS_PER_CONVERSATION = 10
USERS = 5_000
MESSAGES_PER_CONVERSATION = MESSAGES // CONVERSATIONS
NOW_MS = 1_764_064_800_000  # 2025-11-25T10:00:00.000Z

REPLAY_LIMIT = 50
WARM_UP = 20
REPETITIONS = 200
# A hot query may examine a few times the rows it returns, never a table's worth.
MAX_EXAMINED_ROWS = 4 * REPLAY_LIMIT
INDEXED_ACCESS = {"const", "eq_ref", "ref", "range"}

# -- the generated data set, in SQL (for the server) and in Python (for the checks) ------
# Member k (0-9) of conversation c is user (7c + 997k) mod 5000 + 1: ten distinct users.
# Message n belongs to conversation (n-1) mod 2000 + 1, is sent by its member
# ((n-1) div 2000) mod 10, with client message id MD5(n) (32 hex digits, like a UUID).

_MEMBER_SQL = f"(({{c}}) * 7 + ({{k}}) * 997) % {USERS} + 1"
_CONVERSATION_OF_SQL = f"(seq - 1) % {CONVERSATIONS} + 1"
_MEMBER_INDEX_OF_SQL = f"(seq - 1) DIV {CONVERSATIONS} % {MEMBERS_PER_CONVERSATION}"


def member(conversation_id: int, k: int) -> int:
    return (conversation_id * 7 + k * 997) % USERS + 1


def conversation_of(message_id: int) -> int:
    return (message_id - 1) % CONVERSATIONS + 1


def sender_of(message_id: int) -> int:
    k = (message_id - 1) // CONVERSATIONS % MEMBERS_PER_CONVERSATION
    return member(conversation_of(message_id), k)


def client_id_of(message_id: int) -> str:
    return hashlib.md5(str(message_id).encode()).hexdigest()


def message_id(conversation_id: int, index: int) -> int:
    """The id of the conversation's index-th message (0-based)."""
    return conversation_id + index * CONVERSATIONS


def last_message_id(conversation_id: int) -> int:
    return message_id(conversation_id, MESSAGES_PER_CONVERSATION - 1)


def _load_statements(p: str) -> list[str]:
    sender = _MEMBER_SQL.format(c=_CONVERSATION_OF_SQL, k=_MEMBER_INDEX_OF_SQL)
    return [
        # Bulk insert into empty InnoDB tables: with these off, MariaDB builds the
        # indexes by sorting instead of row by row. The data is unique by construction.
        "SET SESSION unique_checks = 0, foreign_key_checks = 0",
        f"INSERT INTO {p}users (id, name, created_at_ms) "
        f"SELECT seq, CONCAT('User ', seq), {NOW_MS} FROM seq_1_to_{USERS}",
        f"INSERT INTO {p}conversations (id, title, created_at_ms) "
        f"SELECT seq, CONCAT('Conversation ', seq), {NOW_MS} FROM seq_1_to_{CONVERSATIONS}",
        f"INSERT INTO {p}members (conversation_id, user_id, joined_at_ms) "
        f"SELECT c.seq, {_MEMBER_SQL.format(c='c.seq', k='k.seq')}, {NOW_MS} "
        f"FROM seq_1_to_{CONVERSATIONS} AS c "
        f"CROSS JOIN seq_0_to_{MEMBERS_PER_CONVERSATION - 1} AS k",
        f"INSERT INTO {p}messages (id, conversation_id, sender_id, sender_name, "
        "client_message_id, text, created_at_ms) "
        f"SELECT seq, {_CONVERSATION_OF_SQL}, {sender}, CONCAT('User ', {sender}), MD5(seq), "
        "CONCAT('Message ', seq, ': an ordinary line of chat, about this long.'), "
        f"{NOW_MS} + seq * 1000 FROM seq_1_to_{MESSAGES}",
        "SET SESSION unique_checks = 1, foreign_key_checks = 1",
        f"ANALYZE TABLE {p}users, {p}conversations, {p}members, {p}messages",
    ]


@dataclass(frozen=True)
class Dataset:
    settings: Settings
    database: str
    prefix: str
    load_seconds: float

    def raw(self) -> pymysql.connections.Connection:
        return connect(self.settings.database_url, self.database)


async def _migrate(settings: Settings) -> list[int]:
    storage = await open_storage(settings)
    try:
        return await storage.migrate()
    finally:
        await storage.close()


def _our_tables(conn: pymysql.connections.Connection, prefix: str) -> list[str]:
    with conn.cursor() as cursor:
        cursor.execute("SHOW TABLES")
        return [str(row[0]) for row in cursor.fetchall() if str(row[0]).startswith(prefix)]


@pytest.fixture(scope="module")
def dataset(mariadb_url: str) -> Iterator[Dataset]:
    prefix = unique_prefix()
    settings = load_settings(
        {"NODE_ENV": "test", "DATABASE_URL": mariadb_url, "DB_TABLE_PREFIX": prefix},
        dotenv_path=None,
    )
    database = MariaDbTarget.from_url(mariadb_url).database
    assert asyncio.run(_migrate(settings)) == [m.version for m in MIGRATIONS]
    conn = connect(mariadb_url, database)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT support FROM information_schema.engines "
                           "WHERE engine = 'SEQUENCE'")
            row = cursor.fetchone()
            assert row is not None and row[0] in ("YES", "DEFAULT"), (
                "the Sequence engine generates the rows; this MariaDB lacks it"
            )
            started = time.perf_counter()
            for statement in _load_statements(prefix):
                cursor.execute(statement)
                cursor.fetchall()
            load_seconds = time.perf_counter() - started
            cursor.execute(f"SELECT COUNT(*), MAX(id) FROM {prefix}messages")
            assert cursor.fetchone() == (MESSAGES, MESSAGES)
            # unique_checks were off: prove the keys unique after the fact.
            cursor.execute(f"SELECT COUNT(DISTINCT conversation_id, user_id) FROM {prefix}members")
            assert cursor.fetchone() == (CONVERSATIONS * MEMBERS_PER_CONVERSATION,)
        print(f"\nloaded {MESSAGES:,} messages in {load_seconds:.1f} s")
        yield Dataset(settings, database, prefix, load_seconds)
    finally:
        with conn.cursor() as cursor:
            for table in _our_tables(conn, prefix):
                cursor.execute(f"DROP TABLE `{table}`")
        assert _our_tables(conn, prefix) == []
        conn.close()


@pytest.fixture
async def loaded(backend_name: str, dataset: Dataset) -> AsyncIterator[SqlStorage]:
    assert backend_name == "mariadb"
    opened = await open_storage(dataset.settings)
    assert await opened.pending_migrations() == []
    yield opened
    await opened.close()


# -- recording the statements SqlStorage sends ----------------------------------------------

Statement = tuple[str, tuple[Any, ...]]


class _RecordingCursor:
    def __init__(self, inner: Cursorish, log: list[Statement]) -> None:
        self._inner = inner
        self._log = log

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        self._log.append((sql, tuple(params)))
        return await self._inner.fetch_one(sql, params)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        self._log.append((sql, tuple(params)))
        return await self._inner.fetch_all(sql, params)

    async def execute(self, sql: str, params: Params = ()) -> tuple[int, int | None]:
        self._log.append((sql, tuple(params)))
        return await self._inner.execute(sql, params)


class RecordingEngine(_RecordingCursor):
    """The real engine, keeping every statement (with its parameters) it is sent."""

    def __init__(self, inner: Engine) -> None:
        self.statements: list[Statement] = []
        super().__init__(inner, self.statements)
        self._engine = inner
        self.dialect: Dialect = inner.dialect

    def transaction(self) -> AbstractAsyncContextManager[Cursorish]:
        return self._wrapped(self._engine.transaction())

    def migration_lock(self) -> AbstractAsyncContextManager[Cursorish]:
        return self._wrapped(self._engine.migration_lock())

    @asynccontextmanager
    async def _wrapped(
        self, inner: AbstractAsyncContextManager[Cursorish]
    ) -> AsyncIterator[Cursorish]:
        async with inner as tx:
            yield _RecordingCursor(tx, self.statements)

    async def close(self) -> None:
        await self._engine.close()


async def statements_of(
    storage: SqlStorage, dataset: Dataset, call: Callable[[SqlStorage], Awaitable[object]]
) -> list[Statement]:
    """The statements one Storage call sends, recorded on the same engine."""
    recorder = RecordingEngine(storage.engine)
    await call(SqlStorage(recorder, dataset.prefix, dataset.settings.user_id_type))
    return recorder.statements


@dataclass(frozen=True)
class PlanRow:
    select_type: str
    table: str
    type: str | None
    key: str | None
    rows: int | None
    extra: str


def explain(dataset: Dataset, statement: Statement) -> tuple[str, list[PlanRow]]:
    """EXPLAIN of exactly the text the engine sends, placeholders bound the same way."""
    sql, params = statement
    conn = dataset.raw()
    try:
        with conn.cursor(pymysql.cursors.DictCursor) as cursor:
            text = cursor.mogrify(mysql_placeholders(sql), params)
            cursor.execute("EXPLAIN " + text)
            rows = cursor.fetchall()
    finally:
        conn.close()
    plan = [
        PlanRow(str(row["select_type"]), str(row["table"]), row["type"], row["key"],
                None if row["rows"] is None else int(row["rows"]), str(row["Extra"] or ""))
        for row in rows
    ]
    return text, plan


def assert_indexed(
    dataset: Dataset, statement: Statement, table: str, index: str
) -> PlanRow:
    text, plan = explain(dataset, statement)
    shown = "\n".join(str(row) for row in plan)
    # A message is read with the message it quotes (alias `q`, storage/tables.py):
    # one row at most by its primary key, or none to read (a const plan).
    quoted = [row for row in plan if row.table == "q"]
    for row in quoted:
        assert row.type in ("eq_ref", "const") and (row.rows or 0) <= 1, f"{text}\n{shown}"
        assert row.key in ("PRIMARY", None), f"{text}\n{shown}"
    plan = [row for row in plan if row.table != "q"]
    assert len(plan) == 1, f"{text}\n{shown}"
    (row,) = plan
    assert row.table in (dataset.prefix + table, "m"), f"{text}\n{shown}"
    assert row.type in INDEXED_ACCESS, f"not an index lookup:\n{text}\n{shown}"
    assert row.key == index, f"expected index {index}:\n{text}\n{shown}"
    assert row.rows is not None and row.rows <= MAX_EXAMINED_ROWS, f"{text}\n{shown}"
    assert "filesort" not in row.extra and "temporary" not in row.extra, f"{text}\n{shown}"
    print(f"\nEXPLAIN {text}\n  {row}")
    return row


def only(statements: list[Statement], verb: str) -> Statement:
    chosen = [s for s in statements if s[0].lstrip().upper().startswith(verb)]
    assert len(chosen) == 1, statements
    return chosen[0]


# -- timing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p95_ms: float


async def timed(
    name: str, call: Callable[..., Awaitable[object]], arguments: Sequence[tuple[Any, ...]]
) -> Timing:
    """Call once per arguments (the first WARM_UP untimed); median and p95 of the rest."""
    assert len(arguments) == WARM_UP + REPETITIONS
    for args in arguments[:WARM_UP]:
        await call(*args)
    samples: list[float] = []
    for args in arguments[WARM_UP:]:
        started = time.perf_counter()
        await call(*args)
        samples.append((time.perf_counter() - started) * 1000)
    timing = Timing(statistics.median(samples), statistics.quantiles(samples, n=20)[-1])
    print(f"\n{name}: median {timing.median_ms:.2f} ms, p95 {timing.p95_ms:.2f} ms "
          f"over {REPETITIONS} calls")
    return timing


def sample_conversations(seed: int) -> list[tuple[int]]:
    """Distinct conversations, one per call, so no call is served by the one before."""
    picked = random.Random(seed).sample(range(1, CONVERSATIONS + 1), WARM_UP + REPETITIONS)
    return [(conversation_id,) for conversation_id in picked]


# -- the hot paths --------------------------------------------------------------------------


async def test_replay_of_the_last_50_messages(loaded: SqlStorage, dataset: Dataset) -> None:
    def since_of(conversation_id: int) -> int:
        return message_id(conversation_id, MESSAGES_PER_CONVERSATION - 1 - REPLAY_LIMIT)

    async def replay(conversation_id: int) -> None:
        since = since_of(conversation_id)
        page = await loaded.messages.messages_after(conversation_id, since, REPLAY_LIMIT)
        assert [m.id for m in page] == [
            message_id(conversation_id, i)
            for i in range(MESSAGES_PER_CONVERSATION - REPLAY_LIMIT, MESSAGES_PER_CONVERSATION)
        ]
        assert {m.conversation_id for m in page} == {conversation_id}
        assert page[-1].client_message_id == client_id_of(last_message_id(conversation_id))
        assert page[-1].user_id == sender_of(last_message_id(conversation_id))

    await timed("replay of the last 50 (messages_after)", replay, sample_conversations(1))

    statements = await statements_of(
        loaded, dataset, lambda s: s.messages.messages_after(777, since_of(777), REPLAY_LIMIT)
    )
    row = assert_indexed(dataset, only(statements, "SELECT"), "messages",
                         f"{dataset.prefix}messages_by_conversation")
    assert row.type == "range"


async def test_membership_check(loaded: SqlStorage, dataset: Dataset) -> None:
    picks = random.Random(2)

    async def check(conversation_id: int) -> None:
        user = member(conversation_id, picks.randrange(MEMBERS_PER_CONVERSATION))
        assert await loaded.conversations.is_member(conversation_id, user)

    await timed("membership check (is_member)", check, sample_conversations(2))
    outsider = next(u for u in range(1, USERS + 1)
                    if u not in {member(778, k) for k in range(MEMBERS_PER_CONVERSATION)})
    assert not await loaded.conversations.is_member(778, outsider)

    statements = await statements_of(
        loaded, dataset, lambda s: s.conversations.is_member(778, member(778, 3))
    )
    assert_indexed(dataset, only(statements, "SELECT"), "members", "PRIMARY")


async def test_idempotency_lookup_of_a_repeated_send(
    loaded: SqlStorage, dataset: Dataset
) -> None:
    async def resend(conversation_id: int) -> None:
        original = message_id(conversation_id, random.Random(conversation_id).randrange(
            MESSAGES_PER_CONVERSATION))
        result = await loaded.messages.store_message(
            conversation_id, sender_of(original), "User", client_id_of(original), "again",
            NOW_MS + 10**9,
        )
        assert result.duplicate
        assert result.message.id == original
        assert result.message.text != "again"

    await timed("idempotency lookup (store_message of a repeat)", resend, sample_conversations(3))

    repeat = 779 + 300 * CONVERSATIONS
    statements = await statements_of(loaded, dataset, lambda s: s.messages.store_message(
        779, sender_of(repeat), "User", client_id_of(repeat), "again", NOW_MS))
    # A batch inserts first (storage/messages.py): a repeat fails that INSERT as a
    # whole, and only then is its key looked up, by the index; nothing is stored.
    inserts = [s for s in statements if s[0].lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 1 and "messages" in inserts[0][0]
    row = assert_indexed(dataset, only(statements, "SELECT"), "messages",
                         f"{dataset.prefix}messages_by_client_id")
    assert (row.type, row.rows) == ("const", 1)
    count = await loaded.engine.fetch_one(f"SELECT COUNT(*) FROM {dataset.prefix}messages")
    assert count == (MESSAGES,), "a repeated send must store nothing"


async def test_read_position_update_and_lookup(loaded: SqlStorage, dataset: Dataset) -> None:
    picks = random.Random(4)
    pairs: list[tuple[int, UserId, int]] = [
        (c, member(c, picks.randrange(MEMBERS_PER_CONVERSATION)),
         message_id(c, picks.randrange(MESSAGES_PER_CONVERSATION)))
        for (c,) in sample_conversations(4)
    ]

    async def advance(conversation_id: int, user: UserId, read_id: int) -> None:
        assert await loaded.receipts.advance_read(conversation_id, user, read_id)

    async def look_up(conversation_id: int, user: UserId, read_id: int) -> None:
        assert await loaded.receipts.last_read(conversation_id, user) == read_id

    await timed("read position update (advance_read)", advance, pairs)
    await timed("read position lookup (last_read)", look_up, pairs)
    conversation_id, user, read_id = pairs[0]
    assert not await loaded.receipts.advance_read(conversation_id, user, read_id - CONVERSATIONS)
    assert await loaded.receipts.last_read(conversation_id, user) == read_id

    async def receipt(s: SqlStorage) -> None:
        await s.receipts.advance_read(780, member(780, 5), last_message_id(780))
        await s.receipts.last_read(780, member(780, 5))

    statements = await statements_of(loaded, dataset, receipt)
    for verb in ("UPDATE", "SELECT"):
        assert_indexed(dataset, only(statements, verb), "members", "PRIMARY")


async def test_message_in_conversation_check_before_a_receipt(
    loaded: SqlStorage, dataset: Dataset
) -> None:
    async def check(conversation_id: int) -> None:
        last = last_message_id(conversation_id)
        assert await loaded.messages.message_in_conversation(conversation_id, last)

    await timed("message in conversation (message_in_conversation)", check, sample_conversations(5))
    assert not await loaded.messages.message_in_conversation(781, last_message_id(782))

    statements = await statements_of(
        loaded, dataset, lambda s: s.messages.message_in_conversation(781, last_message_id(781))
    )
    row = assert_indexed(dataset, only(statements, "SELECT"), "messages", "PRIMARY")
    assert (row.type, row.rows) == ("const", 1)
