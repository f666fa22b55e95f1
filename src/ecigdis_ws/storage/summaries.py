"""The REST API's list of a user's conversations, with unread counts."""

from __future__ import annotations

from collections.abc import Sequence

from ecigdis_ws.domain import ConversationSummary, StoredMessage, UserId
from ecigdis_ws.storage.engine import Cursorish, Row
from ecigdis_ws.storage.tables import MESSAGE_COLUMNS, MESSAGES, Tables


class ConversationSummaries:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables
        self._engine = tables.engine

    async def list_conversations(self, user_id: UserId, limit: int) -> list[ConversationSummary]:
        # Four statements in one transaction, so the counts, members, pins and last
        # messages describe the same moment.
        async with self._engine.transaction() as tx:
            rows = await self._summary_rows(tx, user_id, limit)
            if not rows:
                return []
            members = await self._members_of(tx, [int(row[0]) for row in rows])
            pins = await self._pins_of(tx, [int(row[0]) for row in rows])
            last = await self._messages_by_id(
                tx, [int(row[5]) for row in rows if row[5] is not None]
            )
        return [
            ConversationSummary(
                id=int(row[0]),
                title=str(row[1]),
                created_at_ms=int(row[2]),
                members=tuple(members.get(int(row[0]), ())),
                unread_count=int(row[4]),
                last_read_message_id=None if row[3] is None else int(row[3]),
                last_message=None if row[5] is None else last.get(int(row[5])),
                pinned=tuple(pins.get(int(row[0]), ())),
            )
            for row in rows
        ]

    async def _summary_rows(self, tx: Cursorish, user_id: UserId, limit: int) -> list[Row]:
        """(id, title, created_at_ms, last read, unread count, last message id)."""
        return await tx.fetch_all(
            self._tables.sql(
                "SELECT c.id, c.title, c.created_at_ms, m.last_read_message_id, "
                "(SELECT COUNT(*) FROM {p}messages x WHERE x.conversation_id = c.id "
                "AND x.id > COALESCE(m.last_read_message_id, 0) "
                "AND x.sender_id <> m.user_id AND x.deleted_at_ms IS NULL), "
                "(SELECT MAX(y.id) FROM {p}messages y WHERE y.conversation_id = c.id) "
                "AS last_id "
                "FROM {p}members m JOIN {p}conversations c ON c.id = m.conversation_id "
                "WHERE m.user_id = ? ORDER BY last_id DESC, c.id DESC LIMIT ?"
            ),
            (str(user_id), limit),
        )

    async def _members_of(
        self, tx: Cursorish, conversation_ids: Sequence[int]
    ) -> dict[int, list[UserId]]:
        marks = ", ".join("?" for _ in conversation_ids)
        rows = await tx.fetch_all(
            self._tables.sql(
                f"SELECT conversation_id, user_id FROM {{p}}members "
                f"WHERE conversation_id IN ({marks}) ORDER BY conversation_id, user_id"
            ),
            conversation_ids,
        )
        members: dict[int, list[UserId]] = {}
        for conversation_id, member in rows:
            members.setdefault(int(conversation_id), []).append(self._tables.user_id(member))
        return members

    async def _pins_of(
        self, tx: Cursorish, conversation_ids: Sequence[int]
    ) -> dict[int, list[int]]:
        marks = ", ".join("?" for _ in conversation_ids)
        rows = await tx.fetch_all(
            self._tables.sql(
                f"SELECT conversation_id, message_id FROM {{p}}pins "
                f"WHERE conversation_id IN ({marks}) "
                "ORDER BY conversation_id, pinned_at_ms, message_id"
            ),
            conversation_ids,
        )
        pins: dict[int, list[int]] = {}
        for conversation_id, message_id in rows:
            pins.setdefault(int(conversation_id), []).append(int(message_id))
        return pins

    async def _messages_by_id(
        self, tx: Cursorish, message_ids: Sequence[int]
    ) -> dict[int, StoredMessage]:
        if not message_ids:
            return {}
        rows = await tx.fetch_all(
            self._tables.sql(
                f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} "
                f"WHERE m.id IN ({', '.join('?' for _ in message_ids)})"
            ),
            message_ids,
        )
        return {message.id: message for message in map(self._tables.message, rows)}
