"""Read positions (receipts) and reactions; each change is also an event-log row."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ecigdis_ws.domain import ReactionAction, ReadPosition, UserId
from ecigdis_ws.storage.event_log import EventLog
from ecigdis_ws.storage.tables import Reactions, Tables


class ReceiptStore:
    def __init__(self, tables: Tables, events: EventLog) -> None:
        self._tables = tables
        self._engine = tables.engine
        self._events = events

    async def advance_read(
        self, conversation_id: int, user_id: UserId, message_id: int, now_ms: int | None = None
    ) -> bool:
        at_ms = int(time.time() * 1000) if now_ms is None else now_ms
        async with self._engine.transaction() as tx:
            changed, _ = await tx.execute(
                self._tables.sql(
                    "UPDATE {p}members SET last_read_message_id = ?, last_read_at_ms = ? "
                    "WHERE conversation_id = ? AND user_id = ? "
                    "AND (last_read_message_id IS NULL OR last_read_message_id < ?)"
                ),
                (message_id, at_ms, conversation_id, str(user_id), message_id),
            )
            if changed:
                await self._events.append_event(
                    tx, "read", conversation_id, message_id, user_id, at_ms
                )
        return changed > 0

    async def last_read(self, conversation_id: int, user_id: UserId) -> int | None:
        row = await self._engine.fetch_one(
            self._tables.sql(
                "SELECT last_read_message_id FROM {p}members "
                "WHERE conversation_id = ? AND user_id = ?"
            ),
            (conversation_id, str(user_id)),
        )
        return None if row is None or row[0] is None else int(row[0])

    async def read_positions(self, conversation_id: int) -> list[ReadPosition]:
        # One primary-key prefix scan gives the members and their positions both.
        rows = await self._engine.fetch_all(
            self._tables.sql(
                "SELECT user_id, last_read_message_id, last_read_at_ms FROM {p}members "
                "WHERE conversation_id = ? ORDER BY user_id"
            ),
            (conversation_id,),
        )
        return [
            ReadPosition(
                self._tables.user_id(row[0]),
                None if row[1] is None else int(row[1]),
                None if row[2] is None else int(row[2]),
            )
            for row in rows
        ]

    async def reactions_of(self, message_ids: Sequence[int]) -> Reactions:
        # Outside the writer's transaction: on SQLite the reader connection, so a
        # replay or a page never holds up sends for it; committed reactions are seen.
        return await self._tables.fetch_reactions(self._engine, message_ids)

    async def toggle_reaction(
        self, message_id: int, user_id: UserId, emoji: str, now_ms: int
    ) -> ReactionAction:
        async with self._engine.transaction() as tx:
            removed, _ = await tx.execute(
                self._tables.sql(
                    "DELETE FROM {p}reactions WHERE message_id = ? AND user_id = ? AND emoji = ?"
                ),
                (message_id, str(user_id), emoji),
            )
            action: ReactionAction = "removed"
            if not removed:
                action = "added"
                await tx.execute(
                    self._tables.sql(
                        "INSERT INTO {p}reactions (message_id, user_id, emoji, created_at_ms) "
                        "VALUES (?, ?, ?, ?)"
                    ),
                    (message_id, str(user_id), emoji, now_ms),
                )
            row = await tx.fetch_one(
                self._tables.sql("SELECT conversation_id FROM {p}messages WHERE id = ?"),
                (message_id,),
            )
            if row is not None:
                await self._events.append_event(
                    tx, "reaction", int(row[0]), message_id, user_id, now_ms, emoji, action
                )
            return action

    async def reactions(self, message_id: int) -> list[tuple[UserId, str]]:
        rows = await self._engine.fetch_all(
            self._tables.sql(
                "SELECT user_id, emoji FROM {p}reactions WHERE message_id = ? "
                "ORDER BY created_at_ms, user_id, emoji"
            ),
            (message_id,),
        )
        return [(self._tables.user_id(row[0]), str(row[1])) for row in rows]
