"""What every SQL store shares: the engine, the table prefix and row decoding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ecigdis_ws.domain import ReactionCount, StoredMessage, UserId
from ecigdis_ws.settings import UserIdType
from ecigdis_ws.storage.engine import Cursorish, Engine, Row

MESSAGE_COLUMNS = (
    "id, conversation_id, sender_id, sender_name, client_message_id, text, created_at_ms"
)

Reactions = dict[int, tuple[ReactionCount, ...]]  # message id -> its emoji, none absent


@dataclass(frozen=True)
class Tables:
    """The chat tables of one database: statements are written with `{p}` for the
    table prefix (DB_TABLE_PREFIX) and `?` placeholders."""

    engine: Engine
    prefix: str
    user_id_type: UserIdType

    def sql(self, statement: str) -> str:
        return statement.replace("{p}", self.prefix)

    def insert_once(self, table: str, columns: str, values: str = "", rows: int = 1) -> str:
        """An INSERT of `rows` rows that skips each whose unique key exists (0 rows
        affected for it)."""
        first = columns.split(",")[0].strip()
        values = values or ", ".join("?" for _ in columns.split(","))
        tuples = ", ".join(f"({values})" for _ in range(rows))
        return (f"INSERT INTO {self.prefix}{table} ({columns}) VALUES {tuples} "
                f"{self.engine.dialect.insert_once(first)}")

    def user_id(self, raw: object) -> UserId:
        # Stored as text on both databases, so one schema serves both id types.
        return int(str(raw)) if self.user_id_type == "int" else str(raw)

    def message(self, row: Row) -> StoredMessage:
        """A row of MESSAGE_COLUMNS."""
        return StoredMessage(
            id=int(row[0]),
            conversation_id=int(row[1]),
            user_id=self.user_id(row[2]),
            sender_name=str(row[3]),
            client_message_id=str(row[4]),
            text=str(row[5]),
            created_at_ms=int(row[6]),
        )

    async def fetch_reactions(self, cursor: Cursorish, message_ids: Sequence[int]) -> Reactions:
        """The reactions on these messages, each message's emoji in the order of first
        use, in ONE query: a page of history costs one, whatever its length (and
        none when it is empty). Ties within a millisecond go by user id, compared
        as bytes on both databases. The primary key (message_id, ...) finds them on
        both engines; at most a page's ids (501) are bound, far below SQLite's
        32766 parameters."""
        if not message_ids:
            return {}
        marks = ", ".join("?" for _ in message_ids)
        rows = await cursor.fetch_all(
            self.sql(
                "SELECT message_id, emoji, user_id FROM {p}reactions "
                f"WHERE message_id IN ({marks}) ORDER BY message_id, created_at_ms, user_id, emoji"
            ),
            list(message_ids),
        )
        grouped: dict[int, dict[str, list[UserId]]] = {}
        for message_id, emoji, user_id in rows:
            users = grouped.setdefault(int(message_id), {}).setdefault(str(emoji), [])
            users.append(self.user_id(user_id))
        return {
            message_id: tuple(ReactionCount(e, tuple(users)) for e, users in by_emoji.items())
            for message_id, by_emoji in grouped.items()
        }
