"""The storage interface in SQL, written once for every engine (Synapse's shape)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ecigdis_ws.domain import ReactionAction, SendResult, StoredMessage, UserId
from ecigdis_ws.settings import UserIdType
from ecigdis_ws.storage.base import Storage
from ecigdis_ws.storage.engine import Cursorish, Engine, Row
from ecigdis_ws.storage.migrations import MIGRATIONS

_MESSAGE_COLUMNS = (
    "id, conversation_id, sender_id, sender_name, client_message_id, text, created_at_ms"
)


class SqlStorage(Storage):
    def __init__(self, engine: Engine, table_prefix: str, user_id_type: UserIdType) -> None:
        self._engine = engine
        self._p = table_prefix
        self._user_id_type = user_id_type

    def _insert_once(self, table: str, columns: str, values: str = "") -> str:
        """An INSERT that skips a row whose unique key exists (0 rows affected).

        MariaDB's INSERT IGNORE would also turn real errors into warnings, so the
        no-op update is used there instead.
        """
        first = columns.split(",")[0].strip()
        values = values or ", ".join("?" for _ in columns.split(","))
        insert = f"INSERT INTO {self._p}{table} ({columns}) VALUES ({values})"
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
        # Through a write transaction: a database that cannot take a message is down.
        async with self._engine.transaction() as tx:
            await tx.fetch_one("SELECT 1")

    async def close(self) -> None:
        await self._engine.close()

    # -- users and conversations ----------------------------------------------------

    async def upsert_user(self, user_id: UserId, name: str, now_ms: int) -> None:
        async with self._engine.transaction() as tx:
            updated, _ = await tx.execute(
                self._sql("UPDATE {p}users SET name = ? WHERE id = ?"), (name, str(user_id))
            )
            if updated == 0:
                await tx.execute(
                    self._insert_once("users", "id, name, created_at_ms"),
                    (str(user_id), name, now_ms),
                )

    async def set_last_seen(self, user_id: UserId, now_ms: int) -> None:
        await self._engine.execute(
            self._sql("UPDATE {p}users SET last_seen_ms = ? WHERE id = ?"), (now_ms, str(user_id))
        )

    async def create_conversation(
        self, title: str, member_ids: Sequence[UserId], now_ms: int
    ) -> int:
        async with self._engine.transaction() as tx:
            _, conversation_id = await tx.execute(
                self._sql("INSERT INTO {p}conversations (title, created_at_ms) VALUES (?, ?)"),
                (title, now_ms),
            )
            assert conversation_id is not None
            for user_id in dict.fromkeys(member_ids):
                await self._insert_member(tx, conversation_id, user_id, now_ms)
        return conversation_id

    async def _insert_member(
        self, tx: Cursorish, conversation_id: int, user_id: UserId, now_ms: int
    ) -> bool:
        inserted, _ = await tx.execute(
            self._insert_once("members", "conversation_id, user_id, joined_at_ms"),
            (conversation_id, str(user_id), now_ms),
        )
        return inserted > 0

    async def ensure_conversation(self, conversation_id: int, now_ms: int) -> None:
        await self._engine.execute(
            self._insert_once("conversations", "id, title, created_at_ms", "?, '', ?"),
            (conversation_id, now_ms),
        )

    async def add_member(self, conversation_id: int, user_id: UserId, now_ms: int) -> bool:
        async with self._engine.transaction() as tx:
            return await self._insert_member(tx, conversation_id, user_id, now_ms)

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

    async def member_ids(self, conversation_id: int) -> list[UserId]:
        rows = await self._engine.fetch_all(
            self._sql("SELECT user_id FROM {p}members WHERE conversation_id = ? ORDER BY user_id"),
            (conversation_id,),
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
        async with self._engine.transaction() as tx:
            inserted, message_id = await tx.execute(
                self._insert_once(
                    "messages",
                    "conversation_id, sender_id, sender_name, client_message_id, text, "
                    "created_at_ms",
                ),
                (conversation_id, str(user_id), sender_name, client_message_id, text, now_ms),
            )
            if inserted:
                assert message_id is not None
                stored = StoredMessage(
                    message_id, conversation_id, user_id, sender_name, client_message_id, text,
                    now_ms,
                )
                return SendResult(stored, duplicate=False)
            row = await tx.fetch_one(
                self._sql(
                    f"SELECT {_MESSAGE_COLUMNS} FROM {{p}}messages "
                    "WHERE sender_id = ? AND client_message_id = ?"
                ),
                (str(user_id), client_message_id),
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

    async def advance_read(self, conversation_id: int, user_id: UserId, message_id: int) -> bool:
        changed, _ = await self._engine.execute(
            self._sql(
                "UPDATE {p}members SET last_read_message_id = ? "
                "WHERE conversation_id = ? AND user_id = ? "
                "AND (last_read_message_id IS NULL OR last_read_message_id < ?)"
            ),
            (message_id, conversation_id, str(user_id), message_id),
        )
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
            if removed:
                return "removed"
            await tx.execute(
                self._sql(
                    "INSERT INTO {p}reactions (message_id, user_id, emoji, created_at_ms) "
                    "VALUES (?, ?, ?, ?)"
                ),
                (message_id, str(user_id), emoji, now_ms),
            )
            return "added"

    async def reactions(self, message_id: int) -> list[tuple[UserId, str]]:
        rows = await self._engine.fetch_all(
            self._sql(
                "SELECT user_id, emoji FROM {p}reactions WHERE message_id = ? "
                "ORDER BY created_at_ms, user_id, emoji"
            ),
            (message_id,),
        )
        return [(self._user_id(row[0]), str(row[1])) for row in rows]
