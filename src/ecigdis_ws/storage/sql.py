"""The storage interface in SQL, written once for every engine (Synapse's shape)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ecigdis_ws.domain import (
    ConversationSummary,
    EventKind,
    LoggedEvent,
    NewMessage,
    ReactionAction,
    SendResult,
    StoredMessage,
    UserId,
)
from ecigdis_ws.errors import StorageUnavailable
from ecigdis_ws.settings import UserIdType
from ecigdis_ws.storage.base import ConversationFull, Storage
from ecigdis_ws.storage.engine import Cursorish, Engine, Row
from ecigdis_ws.storage.group_commit import GroupCommit
from ecigdis_ws.storage.migrations import MIGRATIONS

_MESSAGE_COLUMNS = (
    "id, conversation_id, sender_id, sender_name, client_message_id, text, created_at_ms"
)
_EVENT_KINDS: frozenset[str] = frozenset({"message", "read", "reaction"})
# Members per INSERT: a create writes its members in one statement (1,000 INSERTs
# held the single SQLite writer ~110 ms); 3 parameters a row keeps a statement
# under SQLite's bound of 32,766 parameters.
MEMBER_ROWS_PER_INSERT = 5000
# The health probe: a read that takes no write lock. SQLite's reads the file (a
# bare SELECT 1 never touches it); MariaDB's names no table, so a LOCK TABLES held
# elsewhere cannot block it.
_PING = {"sqlite": "SELECT COUNT(*) FROM sqlite_master", "mysql": "SELECT 1"}


class SqlStorage(Storage):
    def __init__(self, engine: Engine, table_prefix: str, user_id_type: UserIdType) -> None:
        self._engine = engine
        self._p = table_prefix
        self._user_id_type = user_id_type
        self._message_writes = GroupCommit(self._store_batch)
        self._user_writes: GroupCommit[tuple[str, str, int], None] = GroupCommit(
            self._upsert_users
        )
        self._last_seen_writes: GroupCommit[tuple[str, int], None] = GroupCommit(
            self._set_last_seen
        )

    @property
    def messages_being_written(self) -> int:
        """Messages in the batch whose transaction has begun and not yet ended."""
        return self._message_writes.writing

    def _insert_once(self, table: str, columns: str, values: str = "", rows: int = 1) -> str:
        """An INSERT of `rows` rows that skips each whose unique key exists (0 rows
        affected for it).

        MariaDB's INSERT IGNORE would also turn real errors into warnings, so the
        no-op update is used there instead.
        """
        first = columns.split(",")[0].strip()
        values = values or ", ".join("?" for _ in columns.split(","))
        tuples = ", ".join(f"({values})" for _ in range(rows))
        insert = f"INSERT INTO {self._p}{table} ({columns}) VALUES {tuples}"
        if self._engine.dialect == "sqlite":
            return insert + " ON CONFLICT DO NOTHING"
        return insert + f" ON DUPLICATE KEY UPDATE {first} = {first}"

    @property
    def engine(self) -> Engine:
        return self._engine

    def _sql(self, statement: str) -> str:
        return statement.replace("{p}", self._p)

    def _user_id(self, raw: object) -> UserId:
        return int(str(raw)) if self._user_id_type == "int" else str(raw)

    def _message(self, row: Row) -> StoredMessage:
        return StoredMessage(
            id=int(row[0]),
            conversation_id=int(row[1]),
            user_id=self._user_id(row[2]),
            sender_name=str(row[3]),
            client_message_id=str(row[4]),
            text=str(row[5]),
            created_at_ms=int(row[6]),
        )

    # -- migrations -----------------------------------------------------------------

    async def _ensure_migrations_table(self, tx: Cursorish) -> None:
        if await self._table_exists(tx, f"{self._p}schema_migrations"):
            return  # (IF NOT EXISTS alone would make MariaDB warn on every run)
        await tx.execute(self._sql(
            "CREATE TABLE IF NOT EXISTS {p}schema_migrations ("
            "version INTEGER NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, "
            "applied_at_ms BIGINT NOT NULL)"
        ))

    async def _table_exists(self, tx: Cursorish, table: str) -> bool:
        if self._engine.dialect == "sqlite":
            sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            sql = ("SELECT 1 FROM information_schema.tables "
                   "WHERE table_schema = DATABASE() AND table_name = ?")
        return await tx.fetch_one(sql, (table,)) is not None

    async def _applied(self, tx: Cursorish) -> set[int]:
        rows = await tx.fetch_all(self._sql("SELECT version FROM {p}schema_migrations"))
        return {int(row[0]) for row in rows}

    async def migrate(self) -> list[int]:
        applied_now: list[int] = []
        async with self._engine.migration_lock() as tx:
            await self._ensure_migrations_table(tx)
            done = await self._applied(tx)
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                for statement in migration.statements(self._engine.dialect, self._p):
                    await tx.execute(statement)
                await tx.execute(
                    self._sql("INSERT INTO {p}schema_migrations VALUES (?, ?, ?)"),
                    (migration.version, migration.name, int(time.time() * 1000)),
                )
                applied_now.append(migration.version)
        return applied_now

    async def pending_migrations(self) -> list[int]:
        async with self._engine.transaction() as tx:
            await self._ensure_migrations_table(tx)
            done = await self._applied(tx)
        return [m.version for m in MIGRATIONS if m.version not in done]

    async def ping(self) -> None:
        # Outside any write transaction (SQLite: the reader connection; MariaDB: a
        # pooled autocommit connection): a probe neither takes nor waits for the
        # writer's lock, so flooding the public /health cannot slow sends (it took
        # a BEGIN IMMEDIATE per request). Bounded by DB_TIMEOUT_MS like every read.
        await self._engine.fetch_one(_PING[self._engine.dialect])

    async def close(self) -> None:
        await self._message_writes.close()
        await self._user_writes.close()
        await self._last_seen_writes.close()
        await self._engine.close()

    # -- users and conversations ----------------------------------------------------

    async def upsert_user(self, user_id: UserId, name: str, now_ms: int) -> None:
        # A connect storm records thousands of users: they share transactions.
        await self._user_writes.submit((str(user_id), name, now_ms))

    async def _upsert_users(
        self, batch: Sequence[tuple[str, str, int]]
    ) -> list[Exception | None]:
        latest = {user_id: (user_id, name, now_ms) for user_id, name, now_ms in batch}
        rows = ", ".join("(?, ?, ?)" for _ in latest)
        if self._engine.dialect == "sqlite":
            on_conflict = "ON CONFLICT (id) DO UPDATE SET name = excluded.name"
        else:
            on_conflict = "ON DUPLICATE KEY UPDATE name = VALUES(name)"
        async with self._engine.transaction() as tx:
            await tx.execute(
                self._sql(f"INSERT INTO {{p}}users (id, name, created_at_ms) VALUES {rows} "
                          f"{on_conflict}"),
                [value for row in latest.values() for value in row],
            )
        return [None] * len(batch)

    async def set_last_seen(self, user_id: UserId, now_ms: int) -> None:
        # A node going away, or a crowd leaving at closing time, sets thousands.
        await self._last_seen_writes.submit((str(user_id), now_ms))

    async def _set_last_seen(self, batch: Sequence[tuple[str, int]]) -> list[Exception | None]:
        latest = dict(batch)
        async with self._engine.transaction() as tx:
            for user_id, now_ms in latest.items():
                await tx.execute(
                    self._sql("UPDATE {p}users SET last_seen_ms = ? WHERE id = ?"),
                    (now_ms, user_id),
                )
        return [None] * len(batch)

    async def create_conversation(
        self, title: str, member_ids: Sequence[UserId], now_ms: int
    ) -> int:
        async with self._engine.transaction() as tx:
            _, conversation_id = await tx.execute(
                self._sql("INSERT INTO {p}conversations (title, created_at_ms) VALUES (?, ?)"),
                (title, now_ms),
            )
            assert conversation_id is not None
            await self._insert_members(tx, conversation_id, member_ids, now_ms)
        return conversation_id

    async def _insert_members(
        self, tx: Cursorish, conversation_id: int, user_ids: Sequence[UserId], now_ms: int
    ) -> int:
        """Members in one INSERT (per MEMBER_ROWS_PER_INSERT); existing ones are
        skipped. Returns how many were not members before."""
        ids = list(dict.fromkeys(str(user_id) for user_id in user_ids))
        inserted = 0
        for start in range(0, len(ids), MEMBER_ROWS_PER_INSERT):
            chunk = ids[start:start + MEMBER_ROWS_PER_INSERT]
            count, _ = await tx.execute(
                self._insert_once(
                    "members", "conversation_id, user_id, joined_at_ms", rows=len(chunk)
                ),
                [value for user_id in chunk for value in (conversation_id, user_id, now_ms)],
            )
            inserted += count
        return inserted

    async def ensure_conversation(self, conversation_id: int, now_ms: int) -> None:
        await self._engine.execute(
            self._insert_once("conversations", "id, title, created_at_ms", "?, '', ?"),
            (conversation_id, now_ms),
        )

    async def add_member(
        self, conversation_id: int, user_id: UserId, now_ms: int, max_members: int | None = None
    ) -> bool:
        async with self._engine.transaction() as tx:
            if max_members is not None:
                await self._require_room(tx, conversation_id, user_id, max_members)
            return await self._insert_members(tx, conversation_id, [user_id], now_ms) > 0

    async def add_members(
        self, conversation_id: int, user_ids: Sequence[UserId], now_ms: int
    ) -> int:
        async with self._engine.transaction() as tx:
            return await self._insert_members(tx, conversation_id, user_ids, now_ms)

    async def _require_room(
        self, tx: Cursorish, conversation_id: int, user_id: UserId, max_members: int
    ) -> None:
        """Raise ConversationFull unless the user is a member already or one more fits.

        Counted inside the adding transaction: SQLite's has the only writer, and
        on MariaDB the conversation's row is locked first, so concurrent adds to
        one conversation count one after another and cannot overshoot together."""
        if self._engine.dialect == "mysql":
            await tx.fetch_one(
                self._sql("SELECT id FROM {p}conversations WHERE id = ? FOR UPDATE"),
                (conversation_id,),
            )
        row = await tx.fetch_one(
            self._sql(
                "SELECT COUNT(*), SUM(CASE WHEN user_id = ? THEN 1 ELSE 0 END) "
                "FROM {p}members WHERE conversation_id = ?"
            ),
            (str(user_id), conversation_id),
        )
        assert row is not None
        if not row[1] and int(row[0]) >= max_members:
            raise ConversationFull(max_members)

    async def is_member(self, conversation_id: int, user_id: UserId) -> bool:
        row = await self._engine.fetch_one(
            self._sql("SELECT 1 FROM {p}members WHERE conversation_id = ? AND user_id = ?"),
            (conversation_id, str(user_id)),
        )
        return row is not None

    async def conversation_exists(self, conversation_id: int) -> bool:
        row = await self._engine.fetch_one(
            self._sql("SELECT 1 FROM {p}conversations WHERE id = ?"), (conversation_id,)
        )
        return row is not None

    async def oldest_conversation_titled(self, title: str) -> int | None:
        # Only the demo's sign-in asks, in development: a scan of conversations is fine.
        row = await self._engine.fetch_one(
            self._sql("SELECT MIN(id) FROM {p}conversations WHERE title = ?"), (title,)
        )
        return None if row is None or row[0] is None else int(row[0])

    async def member_ids(self, conversation_id: int) -> list[UserId]:
        rows = await self._engine.fetch_all(
            self._sql("SELECT user_id FROM {p}members WHERE conversation_id = ? ORDER BY user_id"),
            (conversation_id,),
        )
        return [self._user_id(row[0]) for row in rows]

    async def contact_ids(self, user_id: UserId) -> list[UserId]:
        rows = await self._engine.fetch_all(
            self._sql(
                "SELECT DISTINCT theirs.user_id FROM {p}members mine "
                "JOIN {p}members theirs ON theirs.conversation_id = mine.conversation_id "
                "WHERE mine.user_id = ? AND theirs.user_id <> ?"
            ),
            (str(user_id), str(user_id)),
        )
        return [self._user_id(row[0]) for row in rows]

    # -- messages -------------------------------------------------------------------

    async def store_message(
        self,
        conversation_id: int,
        user_id: UserId,
        sender_name: str,
        client_message_id: str,
        text: str,
        now_ms: int,
    ) -> SendResult:
        return await self._message_writes.submit(NewMessage(
            conversation_id, user_id, sender_name, client_message_id, text, now_ms
        ))

    async def _store_batch(self, batch: Sequence[NewMessage]) -> list[SendResult | Exception]:
        """One transaction for the batch; if it fails for any reason but an outage
        (another node stored one of its keys meanwhile, say), row by row, so one
        row's failure is only its own send's."""
        try:
            async with self._engine.transaction() as tx:
                return list(await self._insert_batch(tx, batch))
        except StorageUnavailable:
            raise
        except Exception:
            results: list[SendResult | Exception] = []
            for message in batch:
                try:
                    results.append(await self._store_one(message))
                except Exception as exc:
                    results.append(exc)
            return results

    async def _insert_batch(
        self, tx: Cursorish, batch: Sequence[NewMessage]
    ) -> list[SendResult]:
        firsts = {message.key: message for message in reversed(batch)}  # first of each key
        stored = await self._existing_messages(tx, list(firsts))
        fresh = [message for key, message in firsts.items() if key not in stored]
        fresh.reverse()  # (firsts was built backwards) back to arrival order: ids grow with it
        stored_before = set(stored)
        if fresh:
            stored.update(await self._insert_fresh(tx, fresh))
            await self.append_message_events(tx, [stored[message.key] for message in fresh])
        results = []
        announced: set[tuple[str, str]] = set()
        for message in batch:
            duplicate = message.key in stored_before or message.key in announced
            announced.add(message.key)
            results.append(SendResult(stored[message.key], duplicate=duplicate))
        return results

    async def _existing_messages(
        self, tx: Cursorish, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredMessage]:
        matches = " OR ".join("(sender_id = ? AND client_message_id = ?)" for _ in keys)
        rows = await tx.fetch_all(
            self._sql(f"SELECT {_MESSAGE_COLUMNS} FROM {{p}}messages WHERE {matches}"),
            [part for key in keys for part in key],
        )
        found = (self._message(row) for row in rows)
        return {(str(m.user_id), m.client_message_id): m for m in found}

    async def _insert_fresh(
        self, tx: Cursorish, fresh: Sequence[NewMessage]
    ) -> dict[tuple[str, str], StoredMessage]:
        rows = ", ".join("(?, ?, ?, ?, ?, ?)" for _ in fresh)
        returned = await tx.fetch_all(
            self._sql(
                "INSERT INTO {p}messages (conversation_id, sender_id, sender_name, "
                f"client_message_id, text, created_at_ms) VALUES {rows} "
                "RETURNING id, sender_id, client_message_id"
            ),
            [value for m in fresh for value in (
                m.conversation_id, str(m.user_id), m.sender_name, m.client_message_id, m.text,
                m.created_at_ms,
            )],
        )
        ids = {(str(row[1]), str(row[2])): int(row[0]) for row in returned}
        return {
            m.key: StoredMessage(
                ids[m.key], m.conversation_id, m.user_id, m.sender_name, m.client_message_id,
                m.text, m.created_at_ms,
            )
            for m in fresh
        }

    async def _store_one(self, message: NewMessage) -> SendResult:
        async with self._engine.transaction() as tx:
            inserted, message_id = await tx.execute(
                self._insert_once(
                    "messages",
                    "conversation_id, sender_id, sender_name, client_message_id, text, "
                    "created_at_ms",
                ),
                (message.conversation_id, str(message.user_id), message.sender_name,
                 message.client_message_id, message.text, message.created_at_ms),
            )
            if inserted:
                assert message_id is not None
                stored = StoredMessage(
                    message_id, message.conversation_id, message.user_id, message.sender_name,
                    message.client_message_id, message.text, message.created_at_ms,
                )
                await self.append_message_events(tx, [stored])
                return SendResult(stored, duplicate=False)
            row = await tx.fetch_one(
                self._sql(
                    f"SELECT {_MESSAGE_COLUMNS} FROM {{p}}messages "
                    "WHERE sender_id = ? AND client_message_id = ?"
                ),
                message.key,
            )
        assert row is not None, "INSERT was ignored, so the first message must exist"
        return SendResult(self._message(row), duplicate=True)

    async def messages_after(
        self, conversation_id: int, after_id: int, limit: int
    ) -> list[StoredMessage]:
        # Through the writer's transaction: a replay must include every message
        # acknowledged so far, so it is ordered after their commits.
        async with self._engine.transaction() as tx:
            rows = await tx.fetch_all(
                self._sql(
                    f"SELECT {_MESSAGE_COLUMNS} FROM {{p}}messages "
                    "WHERE conversation_id = ? AND id > ? ORDER BY id LIMIT ?"
                ),
                (conversation_id, after_id, limit),
            )
        return [self._message(row) for row in rows]

    async def message_in_conversation(self, conversation_id: int, message_id: int) -> bool:
        # Ordered after every acknowledged commit, like messages_after: a client
        # may read or react to a message the moment its ack or message:new arrives.
        async with self._engine.transaction() as tx:
            row = await tx.fetch_one(
                self._sql("SELECT 1 FROM {p}messages WHERE id = ? AND conversation_id = ?"),
                (message_id, conversation_id),
            )
        return row is not None

    # -- receipts and reactions -----------------------------------------------------

    async def advance_read(
        self, conversation_id: int, user_id: UserId, message_id: int, now_ms: int | None = None
    ) -> bool:
        async with self._engine.transaction() as tx:
            changed, _ = await tx.execute(
                self._sql(
                    "UPDATE {p}members SET last_read_message_id = ? "
                    "WHERE conversation_id = ? AND user_id = ? "
                    "AND (last_read_message_id IS NULL OR last_read_message_id < ?)"
                ),
                (message_id, conversation_id, str(user_id), message_id),
            )
            if changed:
                at_ms = int(time.time() * 1000) if now_ms is None else now_ms
                await self.append_event(tx, "read", conversation_id, message_id, user_id, at_ms)
        return changed > 0

    async def last_read(self, conversation_id: int, user_id: UserId) -> int | None:
        row = await self._engine.fetch_one(
            self._sql(
                "SELECT last_read_message_id FROM {p}members "
                "WHERE conversation_id = ? AND user_id = ?"
            ),
            (conversation_id, str(user_id)),
        )
        return None if row is None or row[0] is None else int(row[0])

    async def toggle_reaction(
        self, message_id: int, user_id: UserId, emoji: str, now_ms: int
    ) -> ReactionAction:
        async with self._engine.transaction() as tx:
            removed, _ = await tx.execute(
                self._sql(
                    "DELETE FROM {p}reactions WHERE message_id = ? AND user_id = ? AND emoji = ?"
                ),
                (message_id, str(user_id), emoji),
            )
            action: ReactionAction = "removed"
            if not removed:
                action = "added"
                await tx.execute(
                    self._sql(
                        "INSERT INTO {p}reactions (message_id, user_id, emoji, created_at_ms) "
                        "VALUES (?, ?, ?, ?)"
                    ),
                    (message_id, str(user_id), emoji, now_ms),
                )
            row = await tx.fetch_one(
                self._sql("SELECT conversation_id FROM {p}messages WHERE id = ?"), (message_id,)
            )
            if row is not None:
                await self.append_event(
                    tx, "reaction", int(row[0]), message_id, user_id, now_ms, emoji, action
                )
            return action

    async def reactions(self, message_id: int) -> list[tuple[UserId, str]]:
        rows = await self._engine.fetch_all(
            self._sql(
                "SELECT user_id, emoji FROM {p}reactions WHERE message_id = ? "
                "ORDER BY created_at_ms, user_id, emoji"
            ),
            (message_id,),
        )
        return [(self._user_id(row[0]), str(row[1])) for row in rows]

    # -- the event log and the REST API's reads ---------------------------------------

    async def append_event(
        self,
        tx: Cursorish,
        kind: EventKind,
        conversation_id: int,
        message_id: int,
        user_id: UserId,
        now_ms: int,
        emoji: str | None = None,
        action: ReactionAction | None = None,
    ) -> None:
        """Record in the event log, inside the caller's open transaction, what the
        long-poll reports: so the row commits (and is rolled back) with the change.
        Every write path of a message, a read position or a reaction calls this
        (messages through append_message_events)."""
        await self._insert_events(
            tx, [(conversation_id, kind, message_id, str(user_id), emoji, action, now_ms)]
        )

    async def append_message_events(self, tx: Cursorish, stored: Sequence[StoredMessage]) -> None:
        """append_event for messages stored now in this transaction, in id order,
        one INSERT for a whole batch."""
        await self._insert_events(tx, [
            (m.conversation_id, "message", m.id, str(m.user_id), None, None, m.created_at_ms)
            for m in sorted(stored, key=lambda m: m.id)
        ])

    async def _insert_events(self, tx: Cursorish, rows: Sequence[tuple[object, ...]]) -> None:
        if not rows:
            return
        values = ", ".join("(?, ?, ?, ?, ?, ?, ?)" for _ in rows)
        await tx.execute(
            self._sql(
                "INSERT INTO {p}events (conversation_id, kind, message_id, user_id, emoji, "
                f"action, created_at_ms) VALUES {values}"
            ),
            [value for row in rows for value in row],
        )

    async def event_log_last_id(self) -> int:
        async with self._engine.transaction() as tx:
            row = await tx.fetch_one(self._sql("SELECT MAX(id) FROM {p}events"))
        return 0 if row is None or row[0] is None else int(row[0])

    async def event_log_ids(self, after_id: int, limit: int) -> list[tuple[int, int]]:
        async with self._engine.transaction() as tx:
            rows = await tx.fetch_all(
                self._sql(
                    "SELECT id, created_at_ms FROM {p}events WHERE id > ? ORDER BY id LIMIT ?"
                ),
                (after_id, limit),
            )
        return [(int(row[0]), int(row[1])) for row in rows]

    async def event_log_id_before(self, created_before_ms: int) -> int:
        async with self._engine.transaction() as tx:
            row = await tx.fetch_one(
                self._sql(
                    "SELECT id FROM {p}events WHERE created_at_ms <= ? "
                    "ORDER BY created_at_ms DESC, id DESC LIMIT 1"
                ),
                (created_before_ms,),
            )
        return 0 if row is None else int(row[0])

    async def events_for_user(
        self, user_id: UserId, after_id: int, up_to_id: int, limit: int
    ) -> list[LoggedEvent]:
        # Through the writer's transaction, like messages_after: ordered after
        # every acknowledged commit.
        async with self._engine.transaction() as tx:
            rows = await tx.fetch_all(
                self._sql(
                    "SELECT e.id, e.kind, e.conversation_id, e.message_id, e.user_id, e.emoji, "
                    "e.action, e.created_at_ms, g.id, g.conversation_id, g.sender_id, "
                    "g.sender_name, g.client_message_id, g.text, g.created_at_ms "
                    "FROM {p}events e "
                    "JOIN {p}members m ON m.conversation_id = e.conversation_id "
                    "AND m.user_id = ? "
                    "LEFT JOIN {p}messages g ON g.id = e.message_id AND e.kind = 'message' "
                    "WHERE e.id > ? AND e.id <= ? ORDER BY e.id LIMIT ?"
                ),
                (str(user_id), after_id, up_to_id, limit),
            )
        events = []
        for row in rows:
            kind = str(row[1])
            assert kind in _EVENT_KINDS, f"unknown event kind {kind!r}"
            action = None if row[6] is None else str(row[6])
            assert action in (None, "added", "removed")
            events.append(LoggedEvent(
                id=int(row[0]),
                kind=kind,  # type: ignore[arg-type]
                conversation_id=int(row[2]),
                message_id=int(row[3]),
                user_id=self._user_id(row[4]),
                emoji=None if row[5] is None else str(row[5]),
                action=action,  # type: ignore[arg-type]
                created_at_ms=int(row[7]),
                message=self._message(row[8:]) if row[8] is not None else None,
            ))
        return events

    async def list_conversations(self, user_id: UserId, limit: int) -> list[ConversationSummary]:
        async with self._engine.transaction() as tx:
            rows = await tx.fetch_all(
                self._sql(
                    "SELECT c.id, c.title, c.created_at_ms, m.last_read_message_id, "
                    "(SELECT COUNT(*) FROM {p}messages x WHERE x.conversation_id = c.id "
                    "AND x.id > COALESCE(m.last_read_message_id, 0) "
                    "AND x.sender_id <> m.user_id), "
                    "(SELECT MAX(y.id) FROM {p}messages y WHERE y.conversation_id = c.id) "
                    "AS last_id "
                    "FROM {p}members m JOIN {p}conversations c ON c.id = m.conversation_id "
                    "WHERE m.user_id = ? ORDER BY last_id DESC, c.id DESC LIMIT ?"
                ),
                (str(user_id), limit),
            )
            if not rows:
                return []
            ids = [int(row[0]) for row in rows]
            marks = ", ".join("?" for _ in ids)
            member_rows = await tx.fetch_all(
                self._sql(
                    f"SELECT conversation_id, user_id FROM {{p}}members "
                    f"WHERE conversation_id IN ({marks}) ORDER BY conversation_id, user_id"
                ),
                ids,
            )
            last_ids = [int(row[5]) for row in rows if row[5] is not None]
            last_rows = await tx.fetch_all(
                self._sql(
                    f"SELECT {_MESSAGE_COLUMNS} FROM {{p}}messages "
                    f"WHERE id IN ({', '.join('?' for _ in last_ids)})"
                ),
                last_ids,
            ) if last_ids else []
        members: dict[int, list[UserId]] = {}
        for conversation_id, member in member_rows:
            members.setdefault(int(conversation_id), []).append(self._user_id(member))
        last = {message.id: message for message in map(self._message, last_rows)}
        return [
            ConversationSummary(
                id=int(row[0]),
                title=str(row[1]),
                created_at_ms=int(row[2]),
                members=tuple(members.get(int(row[0]), ())),
                unread_count=int(row[4]),
                last_read_message_id=None if row[3] is None else int(row[3]),
                last_message=None if row[5] is None else last.get(int(row[5])),
            )
            for row in rows
        ]

    async def messages_page(
        self, conversation_id: int, after_id: int | None, before_id: int | None, limit: int
    ) -> list[StoredMessage]:
        conditions = ["conversation_id = ?"]
        params: list[int] = [conversation_id]
        if after_id is not None:
            conditions.append("id > ?")
            params.append(after_id)
        if before_id is not None:
            conditions.append("id < ?")
            params.append(before_id)
        order = "ASC" if after_id is not None else "DESC"
        async with self._engine.transaction() as tx:
            rows = await tx.fetch_all(
                self._sql(
                    f"SELECT {_MESSAGE_COLUMNS} FROM {{p}}messages "
                    f"WHERE {' AND '.join(conditions)} ORDER BY id {order} LIMIT ?"
                ),
                (*params, limit),
            )
        messages = [self._message(row) for row in rows]
        return messages if after_id is not None else messages[::-1]

    async def remove_member(self, conversation_id: int, user_id: UserId) -> bool:
        async with self._engine.transaction() as tx:
            removed, _ = await tx.execute(
                self._sql("DELETE FROM {p}members WHERE conversation_id = ? AND user_id = ?"),
                (conversation_id, str(user_id)),
            )
        return removed > 0

    async def conversation_ids_of(self, user_id: UserId) -> set[int]:
        rows = await self._engine.fetch_all(
            self._sql("SELECT conversation_id FROM {p}members WHERE user_id = ?"), (str(user_id),)
        )
        return {int(row[0]) for row in rows}
