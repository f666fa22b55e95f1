"""A message after it is sent: edits (with the versions they replaced), deletions
that erase, and pins. Each change is one transaction with its event-log row, so
the long-poll and a join's `cursor` replay see it exactly when it commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ecigdis_ws.domain import MessageVersion, StoredMessage, UserId
from ecigdis_ws.storage.engine import Cursorish, Engine
from ecigdis_ws.storage.event_log import EventLog
from ecigdis_ws.storage.tables import MESSAGE_COLUMNS, MESSAGES, Tables

# Event ids per UPDATE: far below SQLite's bound-parameter limit however many
# reactions one message collected.
_IDS_PER_STATEMENT = 500


@asynccontextmanager
async def erasing(engine: Engine, tx: Cursorish) -> AsyncIterator[None]:
    """Within a write transaction: what it deletes or overwrites is zeroed in the
    database file, not left as free space (docs/security.md, "Deletion"); the
    connection goes back to leaving freed space as it is, whatever happens."""
    switch_on, switch_off = engine.dialect.erase_freed(True), engine.dialect.erase_freed(False)
    if switch_on is None or switch_off is None:
        yield
        return
    await tx.execute(switch_on)
    try:
        yield
    finally:
        await tx.execute(switch_off)


class PinsFull(Exception):
    """A pin was refused, nothing written: the conversation has `max_pins`."""

    def __init__(self, max_pins: int) -> None:
        super().__init__(f"the conversation already has {max_pins} pinned messages")
        self.max_pins = max_pins


class MessageDeleted(Exception):
    """A pin was refused, nothing written: the message was deleted after the
    caller read it (another request's deletion in between)."""

    def __init__(self, message_id: int) -> None:
        super().__init__(f"message {message_id} was deleted")
        self.message_id = message_id


class MessageChangeStore:
    def __init__(self, tables: Tables, events: EventLog) -> None:
        self._tables = tables
        self._engine = tables.engine
        self._events = events

    async def message(self, conversation_id: int, message_id: int) -> StoredMessage | None:
        # Outside the writer, as message_in_conversation: a client acts on a message
        # once its ack or message:new arrived, after its commit.
        row = await self._engine.fetch_one(
            self._tables.sql(
                f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} "
                "WHERE m.id = ? AND m.conversation_id = ?"
            ),
            (message_id, conversation_id),
        )
        return None if row is None else self._tables.message(row)

    async def edit_message(
        self, message: StoredMessage, text: str, now_ms: int
    ) -> StoredMessage | None:
        """Replace the text of `message` as it was read (its version), keeping the
        text it replaces; None, with nothing written, when it changed or was
        deleted since that read."""
        async with self._engine.transaction() as tx:
            changed, _ = await tx.execute(
                self._tables.sql(
                    "UPDATE {p}messages SET text = ?, version = version + 1, edited_at_ms = ? "
                    "WHERE id = ? AND version = ? AND deleted_at_ms IS NULL"
                ),
                (text, now_ms, message.id, message.version),
            )
            if not changed:
                return None
            written_at = message.edited_at_ms or message.created_at_ms
            await tx.execute(
                self._tables.sql(
                    "INSERT INTO {p}message_versions "
                    "(message_id, version, text, written_at_ms, replaced_at_ms) "
                    "VALUES (?, ?, ?, ?, ?)"
                ),
                (message.id, message.version, message.text, written_at, now_ms),
            )
            await self._events.append_event(
                tx, "edited", message.conversation_id, message.id, message.user_id, now_ms
            )
            return await self._read(tx, message.id)

    async def delete_message(
        self, message: StoredMessage, deleted_by: UserId | None, now_ms: int
    ) -> bool:
        """Erase the message's text, its earlier versions, its mentions, its
        reactions (the event log's emoji of them too) and its pin, leaving a
        tombstone that keeps its id, sender and time; False when it was deleted
        already (or is gone). A reply quoting it reads the tombstone: its excerpt
        is erased with it, as nothing of it was ever copied."""
        by = "" if deleted_by is None else str(deleted_by)
        async with self._engine.transaction() as tx, erasing(self._engine, tx):
            changed, _ = await tx.execute(
                self._tables.sql(
                    "UPDATE {p}messages SET text = '', mentions = NULL, deleted_at_ms = ?, "
                    "deleted_by = ? WHERE id = ? AND deleted_at_ms IS NULL"
                ),
                (now_ms, by, message.id),
            )
            if not changed:
                return False
            for table in ("message_versions", "reactions"):
                await tx.execute(
                    self._tables.sql(f"DELETE FROM {{p}}{table} WHERE message_id = ?"),
                    (message.id,),
                )
            await self._erase_reaction_events(tx, message)
            await tx.execute(
                self._tables.sql(
                    "DELETE FROM {p}pins WHERE conversation_id = ? AND message_id = ?"
                ),
                (message.conversation_id, message.id),
            )
            await self._events.append_event(
                tx, "deleted", message.conversation_id, message.id, by, now_ms
            )
        return True

    async def _erase_reaction_events(self, tx: Cursorish, message: StoredMessage) -> None:
        """The event log's emoji of the message's reactions, erased by primary key.
        The rows are found by a plain read first (by the conversation's index: a rare
        moderation step may read its log): an UPDATE over that index range would
        lock it on MariaDB, gaps included, and so deadlock with the sends appending
        to the same conversation's log (seen under load as error 1213)."""
        rows = await tx.fetch_all(
            self._tables.sql(
                "SELECT id FROM {p}events WHERE conversation_id = ? "
                "AND kind = 'reaction' AND message_id = ?"
            ),
            (message.conversation_id, message.id),
        )
        ids = [int(row[0]) for row in rows]
        for start in range(0, len(ids), _IDS_PER_STATEMENT):
            chunk = ids[start:start + _IDS_PER_STATEMENT]
            marks = ", ".join("?" * len(chunk))
            await tx.execute(
                self._tables.sql(f"UPDATE {{p}}events SET emoji = NULL WHERE id IN ({marks})"),
                tuple(chunk),
            )

    async def scrub(self) -> None:
        """After deletions: what they erased is left in no file the database keeps
        (on SQLite, the write-ahead log's copies). Called once the room was told, so
        the checkpoint delays no one's `message:deleted`; deletions that arrive while
        one waits share it (the engine's scrub)."""
        await self._engine.scrub()

    async def message_versions(self, message_id: int) -> list[MessageVersion]:
        """The texts the message's edits replaced, oldest first (none once deleted)."""
        rows = await self._engine.fetch_all(
            self._tables.sql(
                "SELECT version, text, written_at_ms, replaced_at_ms FROM {p}message_versions "
                "WHERE message_id = ? ORDER BY version"
            ),
            (message_id,),
        )
        return [MessageVersion(int(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]

    async def pin(
        self, message: StoredMessage, by: UserId | None, now_ms: int, max_pins: int
    ) -> bool:
        """True when the message was not pinned; PinsFull (nothing written) past
        `max_pins`. Counted after the dialect's lock on the conversation's row, as
        an add counts members, so concurrent pins cannot overshoot together.
        MessageDeleted (nothing written) when the message was deleted since the
        caller read it: its row is read (and on MariaDB locked) here, so a deletion
        either commits first and is seen, or waits and then erases this pin."""
        dialect = self._engine.dialect
        async with self._engine.transaction() as tx:
            lock = dialect.lock_for_update(
                self._tables.sql("SELECT id FROM {p}conversations WHERE id = ?")
            )
            if lock is not None:
                await tx.fetch_one(lock, (message.conversation_id,))
            alive = self._tables.sql("SELECT deleted_at_ms FROM {p}messages WHERE id = ?")
            state = await tx.fetch_one(dialect.lock_for_update(alive) or alive, (message.id,))
            if state is None or state[0] is not None:
                raise MessageDeleted(message.id)
            row = await tx.fetch_one(
                self._tables.sql(
                    "SELECT COUNT(*), SUM(CASE WHEN message_id = ? THEN 1 ELSE 0 END), "
                    "MAX(pinned_at_ms) FROM {p}pins WHERE conversation_id = ?"
                ),
                (message.id, message.conversation_id),
            )
            assert row is not None
            if row[1]:
                return False
            if int(row[0]) >= max_pins:
                raise PinsFull(max_pins)
            # pinned_at_ms is what pinned_ids orders by: two pins in one millisecond
            # (a client pinning several at once) keep the order they were made in, a
            # millisecond apart, rather than falling back to the messages' ids.
            order_ms = now_ms if row[2] is None else max(now_ms, int(row[2]) + 1)
            await tx.execute(
                self._tables.sql(
                    "INSERT INTO {p}pins (conversation_id, message_id, pinned_by, pinned_at_ms) "
                    "VALUES (?, ?, ?, ?)"
                ),
                (message.conversation_id, message.id, "" if by is None else str(by), order_ms),
            )
            await self._log(tx, "pinned", message, by, now_ms)
        return True

    async def unpin(self, message: StoredMessage, by: UserId | None, now_ms: int) -> bool:
        """True when the message was pinned."""
        async with self._engine.transaction() as tx:
            removed, _ = await tx.execute(
                self._tables.sql(
                    "DELETE FROM {p}pins WHERE conversation_id = ? AND message_id = ?"
                ),
                (message.conversation_id, message.id),
            )
            if removed:
                await self._log(tx, "unpinned", message, by, now_ms)
        return removed > 0

    async def pinned_ids(self, conversation_id: int) -> list[int]:
        """The conversation's pinned messages, in the order they were pinned."""
        rows = await self._engine.fetch_all(
            self._tables.sql(
                "SELECT message_id FROM {p}pins WHERE conversation_id = ? "
                "ORDER BY pinned_at_ms, message_id"
            ),
            (conversation_id,),
        )
        return [int(row[0]) for row in rows]

    async def _log(
        self, tx: Cursorish, kind: str, message: StoredMessage, by: UserId | None, now_ms: int
    ) -> None:
        assert kind in ("pinned", "unpinned")
        await self._events.append_event(
            tx, kind, message.conversation_id, message.id,  # type: ignore[arg-type]
            "" if by is None else by, now_ms,
        )

    async def _read(self, tx: Cursorish, message_id: int) -> StoredMessage:
        row = await tx.fetch_one(
            self._tables.sql(f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} WHERE m.id = ?"),
            (message_id,),
        )
        assert row is not None, "the message was updated in this transaction"
        return self._tables.message(row)
