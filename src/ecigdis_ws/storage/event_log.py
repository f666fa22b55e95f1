"""The event log behind the REST long-poll: one row per message, receipt and reaction."""

from __future__ import annotations

from collections.abc import Sequence

from ecigdis_ws.domain import EventKind, LoggedEvent, ReactionAction, StoredMessage, UserId
from ecigdis_ws.storage.engine import Cursorish, Row
from ecigdis_ws.storage.tables import Reactions, Tables

_EVENT_KINDS: frozenset[str] = frozenset({"message", "read", "reaction"})


class EventLog:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables
        self._engine = tables.engine

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
            self._tables.sql(
                "INSERT INTO {p}events (conversation_id, kind, message_id, user_id, emoji, "
                f"action, created_at_ms) VALUES {values}"
            ),
            [value for row in rows for value in row],
        )

    # Every read below goes through the writer's transaction, like messages_after:
    # ordered after every acknowledged commit.

    async def event_log_last_id(self) -> int:
        async with self._engine.transaction() as tx:
            row = await tx.fetch_one(self._tables.sql("SELECT MAX(id) FROM {p}events"))
        return 0 if row is None or row[0] is None else int(row[0])

    async def event_log_ids(self, after_id: int, limit: int) -> list[tuple[int, int]]:
        async with self._engine.transaction() as tx:
            rows = await tx.fetch_all(
                self._tables.sql(
                    "SELECT id, created_at_ms FROM {p}events WHERE id > ? ORDER BY id LIMIT ?"
                ),
                (after_id, limit),
            )
        return [(int(row[0]), int(row[1])) for row in rows]

    async def event_log_id_before(self, created_before_ms: int) -> int:
        async with self._engine.transaction() as tx:
            row = await tx.fetch_one(
                self._tables.sql(
                    "SELECT id FROM {p}events WHERE created_at_ms <= ? "
                    "ORDER BY created_at_ms DESC, id DESC LIMIT 1"
                ),
                (created_before_ms,),
            )
        return 0 if row is None else int(row[0])

    async def events_for_user(
        self, user_id: UserId, after_id: int, up_to_id: int, limit: int
    ) -> list[LoggedEvent]:
        async with self._engine.transaction() as tx:
            rows = await tx.fetch_all(
                self._tables.sql(
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
        # The page's reactions in one more query, outside the writer's transaction
        # (on SQLite: the reader connection, so sends do not wait for it).
        message_ids = [int(row[3]) for row in rows if row[8] is not None]
        reactions = await self._tables.fetch_reactions(self._engine, message_ids)
        return [self._event(row, reactions) for row in rows]

    def _event(self, row: Row, reactions: Reactions) -> LoggedEvent:
        """An event row joined with its message (the message's columns NULL unless
        the event is a message)."""
        kind = str(row[1])
        assert kind in _EVENT_KINDS, f"unknown event kind {kind!r}"
        action = None if row[6] is None else str(row[6])
        assert action in (None, "added", "removed")
        return LoggedEvent(
            id=int(row[0]),
            kind=kind,  # type: ignore[arg-type]
            conversation_id=int(row[2]),
            message_id=int(row[3]),
            user_id=self._tables.user_id(row[4]),
            emoji=None if row[5] is None else str(row[5]),
            action=action,  # type: ignore[arg-type]
            created_at_ms=int(row[7]),
            message=self._tables.message(row[8:]) if row[8] is not None else None,
            reactions=reactions.get(int(row[3]), ()) if row[8] is not None else (),
        )
