"""What every SQL store shares: the engine, the table prefix and row decoding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ecigdis_ws import json_codec
from ecigdis_ws.domain import (
    NO_MENTIONS,
    REPLY_EXCERPT_CHARS,
    Mentions,
    ReactionCount,
    ReplyPreview,
    StoredMessage,
    UserId,
    excerpt,
)
from ecigdis_ws.settings import UserIdType
from ecigdis_ws.storage.engine import Cursorish, Engine, Row

# A message as it is now, read from MESSAGES (`m`, with the message it quotes as
# `q`): its columns, then the quoted message's, cut to the excerpt plus one
# character (to know whether it was cut) in the database.
MESSAGE_COLUMNS = (
    "m.id, m.conversation_id, m.sender_id, m.sender_name, m.client_message_id, m.text, "
    "m.created_at_ms, m.version, m.edited_at_ms, m.deleted_at_ms, m.deleted_by, "
    "m.reply_to_id, m.mentions, q.id, q.sender_id, q.sender_name, "
    f"SUBSTR(q.text, 1, {REPLY_EXCERPT_CHARS + 1}), q.deleted_at_ms"
)
MESSAGE_COLUMN_COUNT = 18
MESSAGES = "{p}messages m LEFT JOIN {p}messages q ON q.id = m.reply_to_id"

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

    def actor(self, raw: object) -> UserId | None:
        """Who acted, as an event row or a tombstone names them: "" or NULL is the
        server API, which speaks for no user."""
        return None if raw is None or raw == "" else self.user_id(raw)

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
            version=int(row[7]),
            edited_at_ms=None if row[8] is None else int(row[8]),
            deleted_at_ms=None if row[9] is None else int(row[9]),
            deleted_by=self.actor(row[10]),
            reply_to=None if row[11] is None else self._quoted(int(row[11]), row[13:18]),
            mentions=self.mentions(row[12]),
        )

    def _quoted(self, reply_to_id: int, quoted: Row) -> ReplyPreview:
        """The quoted message's columns (id, sender, name, text cut, deleted_at)."""
        if quoted[0] is None:  # gone by retention: only its id is left
            return ReplyPreview(reply_to_id, None, "", "", deleted=True)
        text = "" if quoted[3] is None or quoted[4] is not None else str(quoted[3])
        return ReplyPreview(reply_to_id, self.user_id(quoted[1]), str(quoted[2]),
                            excerpt(text), deleted=quoted[4] is not None)

    def mentions(self, raw: object) -> Mentions:
        """The `mentions` column: NULL, or `{"u": [ids as text], "all": bool}`."""
        if raw is None:
            return NO_MENTIONS
        stored = json_codec.loads(str(raw))
        return Mentions(tuple(self.user_id(u) for u in stored.get("u", ())),
                        bool(stored.get("all")))

    @staticmethod
    def mentions_column(mentions: Mentions) -> str | None:
        if not mentions:
            return None
        return json_codec.dumps({"u": [str(u) for u in mentions.user_ids],
                                 "all": mentions.everyone})

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
