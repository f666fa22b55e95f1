"""The event log behind the REST long-poll: one row per message, receipt and
reaction, and per membership change made through the REST create or the server API."""

from __future__ import annotations

from collections.abc import Sequence

from ecigdis_ws.domain import (
    ChangedBy,
    EventKind,
    FeedEvent,
    LoggedEvent,
    LoggedMembership,
    MembershipChange,
    MembershipKind,
    ReactionAction,
    StoredMessage,
    UserId,
)
from ecigdis_ws.storage.engine import Cursorish, Row
from ecigdis_ws.storage.tables import MESSAGE_COLUMN_COUNT, MESSAGE_COLUMNS, Reactions, Tables

_EVENT_KINDS: frozenset[str] = frozenset({
    "message", "read", "reaction", "renamed", "edited", "deleted", "pinned", "unpinned",
})
# A membership row ('added', 'removed') is for the member it names, whether or
# not they are one now; a 'created' row for the members since the creation; every
# other row for the conversation's members.
_CONVERSATION_KINDS = (
    "('message', 'read', 'reaction', 'renamed', 'edited', 'deleted', 'pinned', 'unpinned')"
)
# Rows that carry the message as it is now (read with it, MESSAGE_COLUMNS).
_WITH_MESSAGE = "('message', 'edited')"
# What a join replays after its cursor: the conversation's changes but the read
# positions, which the join's answer gives as they are now.
_REPLAYED_KINDS = "('message', 'reaction', 'renamed', 'edited', 'deleted', 'pinned', 'unpinned')"
# ... with the messages replayed by `since` from the messages table instead.
_CHANGE_KINDS = "('reaction', 'renamed', 'edited', 'deleted', 'pinned', 'unpinned')"
_SELECT_EVENTS = (
    "SELECT e.id, e.kind, e.conversation_id, e.message_id, e.user_id, e.emoji, "
    f"e.action, e.created_at_ms, c.title, {MESSAGE_COLUMNS} FROM {{p}}events e "
)
_JOIN_MESSAGES = (
    f"LEFT JOIN {{p}}messages m ON m.id = e.message_id AND e.kind IN {_WITH_MESSAGE} "
    "LEFT JOIN {p}messages q ON q.id = m.reply_to_id "
    # (a rename carries the title the conversation has now)
    "LEFT JOIN {p}conversations c ON c.id = e.conversation_id AND e.kind = 'renamed'"
)
# A message deleted by MESSAGE_RETENTION_DAYS is not announced; an edit of a
# message deleted since is told by its deletion, and a reaction on one (its emoji
# erased with it) is gone with it.
_SHOWN = (
    f"(e.kind NOT IN {_WITH_MESSAGE} OR "
    "(m.id IS NOT NULL AND (e.kind = 'message' OR m.deleted_at_ms IS NULL))) "
    "AND (e.kind <> 'reaction' OR e.emoji IS NOT NULL)"
)
_MEMBERSHIP_KINDS = "('added', 'removed')"


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

    async def append_membership(
        self,
        tx: Cursorish,
        kind: MembershipKind,
        conversation_id: int,
        user_id: UserId,
        changed_by: ChangedBy,
        now_ms: int,
    ) -> None:
        """A row for the user added to (or removed from) the conversation, inside
        the caller's transaction, so their long-poll tells them when it happened."""
        actor = None if changed_by.user_id is None else str(changed_by.user_id)
        await self._insert_events(
            tx, [(conversation_id, kind, 0, str(user_id), None, None, now_ms, actor)]
        )

    async def append_created(
        self, tx: Cursorish, conversation_id: int, changed_by: ChangedBy, now_ms: int
    ) -> None:
        """One row for a conversation created with its members, whatever their
        number: each member reads it through {p}members (joined at its creation),
        so a 1,000-member create writes one row, not 1,000."""
        actor = None if changed_by.user_id is None else str(changed_by.user_id)
        await self._insert_events(
            tx, [(conversation_id, "created", 0, actor or "", None, None, now_ms, actor)]
        )

    async def _insert_events(self, tx: Cursorish, rows: Sequence[tuple[object, ...]]) -> None:
        """Rows of (conversation_id, kind, message_id, user_id, emoji, action,
        created_at_ms), with actor_id as an eighth value in membership rows only:
        the message path names the columns it has always named."""
        if not rows:
            return
        columns = "conversation_id, kind, message_id, user_id, emoji, action, created_at_ms"
        if len(rows[0]) == 8:
            columns += ", actor_id"
        marks = ", ".join("?" for _ in rows[0])
        values = ", ".join(f"({marks})" for _ in rows)
        await tx.execute(
            self._tables.sql(f"INSERT INTO {{p}}events ({columns}) VALUES {values}"),
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
    ) -> list[FeedEvent]:
        """The user's events after `after_id` up to `up_to_id`, at most `limit`, in
        log order: those of the conversations they are a member of, and their own
        membership changes (read apart: a removal is theirs although they are no
        member any more)."""
        async with self._engine.transaction() as tx:
            rows = await tx.fetch_all(
                self._tables.sql(
                    _SELECT_EVENTS + "JOIN {p}members mb ON mb.conversation_id = e.conversation_id "
                    f"AND mb.user_id = ? {_JOIN_MESSAGES} WHERE {_SHOWN} "
                    f"AND e.kind IN {_CONVERSATION_KINDS} "
                    "AND e.id > ? AND e.id <= ? ORDER BY e.id LIMIT ?"
                ),
                (str(user_id), after_id, up_to_id, limit),
            )
            memberships = await self._memberships(tx, user_id, after_id, up_to_id, limit)
        events: list[FeedEvent] = [*await self._with_reactions(rows)]
        # Each list holds everything of its kind up to its own last row (or up to
        # `up_to_id`), so the first `limit` of both together leave nothing out.
        return sorted([*events, *memberships], key=lambda event: event.id)[:limit]

    async def conversation_events(
        self, conversation_id: int, after_id: int, limit: int, with_messages: bool = True
    ) -> list[LoggedEvent]:
        """EventRecords.conversation_events: read outside the writer (as
        messages_after: each is announced only after its commit, and the join reads
        after entering the room, so what this read misses reaches the socket live)."""
        rows = await self._engine.fetch_all(
            self._tables.sql(
                f"{_SELECT_EVENTS}{_JOIN_MESSAGES} WHERE {_SHOWN} "
                f"AND e.kind IN {_REPLAYED_KINDS if with_messages else _CHANGE_KINDS} "
                "AND e.conversation_id = ? AND e.id > ? ORDER BY e.id LIMIT ?"
            ),
            (conversation_id, after_id, limit),
        )
        return await self._with_reactions(rows)

    async def _with_reactions(self, rows: list[Row]) -> list[LoggedEvent]:
        """Rows of _SELECT_EVENTS as events, each new message with its reactions,
        read in one more query outside the writer's transaction (on SQLite: the
        reader connection, so sends do not wait for it)."""
        message_ids = [int(row[3]) for row in rows if row[1] == "message" and row[9] is not None]
        reactions = await self._tables.fetch_reactions(self._engine, message_ids)
        return [self._event(row, reactions) for row in rows]

    async def _memberships(
        self, tx: Cursorish, user_id: UserId, after_id: int, up_to_id: int, limit: int
    ) -> list[LoggedMembership]:
        """The user's membership rows, an added one with the conversation's title and
        its members as they are now. (No index on the user: the scan is the poll's
        own id range, which the query above walks as well.)"""
        rows = await tx.fetch_all(
            self._tables.sql(
                "SELECT e.id, e.kind, e.conversation_id, e.actor_id, c.title FROM {p}events e "
                "LEFT JOIN {p}conversations c ON c.id = e.conversation_id "
                "WHERE e.id > ? AND e.id <= ? AND ("
                f"(e.kind IN {_MEMBERSHIP_KINDS} AND e.user_id = ?) "
                # A creation is the user's if they are a member since then: one
                # added later (or again) has a row of their own (_own_creations).
                "OR (e.kind = 'created' AND EXISTS (SELECT 1 FROM {p}members m "
                "WHERE m.conversation_id = e.conversation_id AND m.user_id = ? "
                "AND m.joined_at_ms <= e.created_at_ms))) "
                "ORDER BY e.id LIMIT ?"
            ),
            (after_id, up_to_id, str(user_id), str(user_id), limit),
        )
        rows = _own_creations(rows)
        added = sorted({int(row[2]) for row in rows if row[1] != "removed"})
        members: dict[int, list[UserId]] = {conversation: [] for conversation in added}
        if added:
            marks = ", ".join("?" for _ in added)
            for conversation, member in await tx.fetch_all(
                self._tables.sql(
                    "SELECT conversation_id, user_id FROM {p}members "
                    f"WHERE conversation_id IN ({marks})"
                ),
                added,
            ):
                members[int(conversation)].append(self._tables.user_id(member))
        return [
            LoggedMembership(int(row[0]), MembershipChange(
                kind="removed" if row[1] == "removed" else "added",
                conversation_id=int(row[2]),
                by=None if row[3] is None else self._tables.user_id(row[3]),
                title="" if row[4] is None else str(row[4]),
                members=tuple(sorted(members.get(int(row[2]), ()), key=str)),
            ))
            for row in rows
        ]

    # -- retention (services/retention.py) ---------------------------------------------

    async def event_log_pruned_through(self) -> int:
        """The highest event id retention has deleted (0: none). Read outside the
        writer, like a health probe: a poll asks it after each read of the log."""
        row = await self._engine.fetch_one(
            self._tables.sql("SELECT through_id FROM {p}event_log_pruned WHERE id = 1")
        )
        return 0 if row is None else int(row[0])

    async def prune_event_log(self, created_before_ms: int, batch: int) -> int:
        """Delete, in one short transaction, at most `batch` of the oldest events,
        none past the last event created before `created_before_ms`, and record
        how far the log is pruned; the rows deleted. The newest event is always
        kept, so MAX(id) (a cursor's upper bound, and what an autoincrement counter
        is rebuilt from) never goes back. Several nodes may run it at once: a
        range another one deleted deletes nothing, and the record only grows."""
        async with self._engine.transaction() as tx:
            through = await self._prunable_through(tx, created_before_ms)
            if through <= 0:
                return 0
            # The batch ends at the batch-th oldest id, or at `through` before that:
            # a range on the primary key, so the DELETE reads only what it deletes.
            row = await tx.fetch_one(
                self._tables.sql(
                    "SELECT id FROM {p}events WHERE id <= ? ORDER BY id LIMIT 1 OFFSET ?"
                ),
                (through, batch - 1),
            )
            end = through if row is None else int(row[0])
            deleted, _ = await tx.execute(
                self._tables.sql("DELETE FROM {p}events WHERE id <= ?"), (end,)
            )
            await tx.execute(
                self._tables.sql(
                    "UPDATE {p}event_log_pruned SET through_id = ? WHERE id = 1 AND through_id < ?"
                ),
                (end, end),
            )
        return deleted

    async def _prunable_through(self, tx: Cursorish, created_before_ms: int) -> int:
        """The id up to which events may go: the last one created before the time
        (ids below it were handed out earlier, so are older still, but for clock
        skew between nodes), short of the newest event."""
        row = await tx.fetch_one(
            self._tables.sql(
                "SELECT id FROM {p}events WHERE created_at_ms < ? "
                "ORDER BY created_at_ms DESC, id DESC LIMIT 1"
            ),
            (created_before_ms,),
        )
        if row is None:
            return 0
        newest = await tx.fetch_one(self._tables.sql("SELECT MAX(id) FROM {p}events"))
        assert newest is not None and newest[0] is not None
        return min(int(row[0]), int(newest[0]) - 1)

    def _event(self, row: Row, reactions: Reactions) -> LoggedEvent:
        """An event row: (id, kind, conversation, message id, user, emoji, action,
        created_at, title) and the message's MESSAGE_COLUMNS (NULL unless the row
        carries the message)."""
        kind = str(row[1])
        assert kind in _EVENT_KINDS, f"unknown event kind {kind!r}"
        action = None if row[6] is None else str(row[6])
        assert action in (None, "added", "removed")
        columns = row[9:9 + MESSAGE_COLUMN_COUNT]
        message = self._tables.message(columns) if columns[0] is not None else None
        return LoggedEvent(
            id=int(row[0]),
            kind=kind,  # type: ignore[arg-type]
            conversation_id=int(row[2]),
            message_id=int(row[3]),
            user_id="" if row[4] == "" else self._tables.user_id(row[4]),
            emoji=None if row[5] is None else str(row[5]),
            action=action,  # type: ignore[arg-type]
            created_at_ms=int(row[7]),
            message=message,
            reactions=reactions.get(int(row[3]), ()) if kind == "message" else (),
            title=None if row[8] is None else str(row[8]),
        )


def _own_creations(rows: list[Row]) -> list[Row]:
    """Rows (id, kind, conversation_id, ...) without the creations the user was
    not made a member by: those followed, in the same answer, by a row of the
    user's own for that conversation (an add in the creation's millisecond, which
    joined_at_ms cannot tell apart, or a removal and an add since)."""
    own_later: set[int] = set()
    kept: list[Row] = []
    for row in reversed(rows):
        conversation = int(row[2])
        if row[1] != "created":
            own_later.add(conversation)
        elif conversation in own_later:
            continue
        kept.append(row)
    kept.reverse()
    return kept
