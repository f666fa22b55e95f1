"""Messages: stored once per (sender, client message id), in batches, and read back."""

from __future__ import annotations

from collections.abc import Sequence

from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import (
    NO_MENTIONS,
    Mentions,
    NewMessage,
    ReplyPreview,
    SendResult,
    StoredMessage,
    UserId,
)
from ecigdis_ws.errors import StorageUnavailable
from ecigdis_ws.storage.engine import Cursorish
from ecigdis_ws.storage.event_log import EventLog
from ecigdis_ws.storage.group_commit import GroupCommit
from ecigdis_ws.storage.message_changes import erasing
from ecigdis_ws.storage.tables import MESSAGE_COLUMNS, MESSAGES, Tables

MessageKey = tuple[str, str]  # (sender id, client message id): the idempotency key


class MessageStore:
    def __init__(self, tables: Tables, events: EventLog, clock: Clock) -> None:
        self._tables = tables
        self._engine = tables.engine
        self._events = events
        self._writes = GroupCommit(self._store_batch, clock)

    @property
    def being_written(self) -> int:
        """Messages in the batch whose transaction has begun and not yet ended."""
        return self._writes.writing

    async def close(self) -> None:
        await self._writes.close()

    async def store_message(
        self,
        conversation_id: int,
        user_id: UserId,
        sender_name: str,
        client_message_id: str,
        text: str,
        now_ms: int,
        deadline: float | None = None,
        reply_to: ReplyPreview | None = None,
        mentions: Mentions = NO_MENTIONS,
    ) -> SendResult:
        """MessageRecords.store_message: queued for the next batch, answered after
        its commit."""
        return await self._writes.submit(NewMessage(
            conversation_id, user_id, sender_name, client_message_id, text, now_ms,
            reply_to, mentions,
        ), deadline)

    async def messages_after(
        self, conversation_id: int, after_id: int, limit: int
    ) -> list[StoredMessage]:
        # Outside the writer (on SQLite, the reader connection in autocommit: each
        # read its own WAL snapshot). A message is acknowledged and fanned out only
        # after its commit, so a read that starts after an ack sees the message, and
        # the join's second replay starts after the socket entered the room, so a
        # commit the read misses reaches the socket live. Through the writer, 5,000
        # rejoins after a restart queued behind sends and were refused "writer busy".
        rows = await self._engine.fetch_all(
            self._tables.sql(
                f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} "
                "WHERE m.conversation_id = ? AND m.id > ? ORDER BY m.id LIMIT ?"
            ),
            (conversation_id, after_id, limit),
        )
        return [self._tables.message(row) for row in rows]

    async def message_in_conversation(self, conversation_id: int, message_id: int) -> bool:
        # A client may read or react to a message the moment its ack or message:new
        # arrives; both come after its commit, which a read that starts later sees
        # (outside the writer, as messages_after).
        row = await self._engine.fetch_one(
            self._tables.sql("SELECT 1 FROM {p}messages WHERE id = ? AND conversation_id = ?"),
            (message_id, conversation_id),
        )
        return row is not None

    async def messages_page(
        self, conversation_id: int, after_id: int | None, before_id: int | None, limit: int
    ) -> list[StoredMessage]:
        conditions = ["m.conversation_id = ?"]
        params: list[int] = [conversation_id]
        if after_id is not None:
            conditions.append("m.id > ?")
            params.append(after_id)
        if before_id is not None:
            conditions.append("m.id < ?")
            params.append(before_id)
        order = "ASC" if after_id is not None else "DESC"
        async with self._engine.transaction() as tx:
            rows = await tx.fetch_all(
                self._tables.sql(
                    f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} "
                    f"WHERE {' AND '.join(conditions)} ORDER BY m.id {order} LIMIT ?"
                ),
                (*params, limit),
            )
        messages = [self._tables.message(row) for row in rows]
        return messages if after_id is not None else messages[::-1]

    async def prune_messages(self, created_before_ms: int, batch: int) -> int:
        """Delete, in one short transaction, the oldest messages created before the
        time, at most `batch`, with their reactions, earlier versions and pins; the
        messages deleted. Read in
        id order from the start, stopping at the first one still kept: a bounded
        read of the primary key (messages have no index by time), so a check with
        nothing to delete costs one row. Their event rows go with the event log's
        own retention; until then the long-poll skips them."""
        async with self._engine.transaction() as tx, erasing(self._engine, tx):
            rows = await tx.fetch_all(
                self._tables.sql("SELECT id, created_at_ms FROM {p}messages ORDER BY id LIMIT ?"),
                (batch,),
            )
            end = 0
            for message_id, created_at_ms in rows:
                if int(created_at_ms) >= created_before_ms:
                    break
                end = int(message_id)
            if not end:
                return 0
            for table in ("reactions", "message_versions", "pins"):
                await tx.execute(
                    self._tables.sql(f"DELETE FROM {{p}}{table} WHERE message_id <= ?"), (end,)
                )
            deleted, _ = await tx.execute(
                self._tables.sql("DELETE FROM {p}messages WHERE id <= ?"), (end,)
            )
        return deleted

    # -- writing a batch ------------------------------------------------------------

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
        candidates = list(firsts.values())
        candidates.reverse()  # (firsts was built backwards) arrival order: ids grow with it
        try:
            # Most batches hold no key stored before: one INSERT, no look-up first
            # (on MariaDB every statement is a round trip that costs more CPU than
            # the rows it carries).
            stored = await self._insert_fresh(tx, candidates)
            stored_before: set[MessageKey] = set()
        except StorageUnavailable:
            raise
        except Exception:
            # A key stored before (a client's retry) fails that INSERT as a whole,
            # and the transaction goes on without it: look the stored keys up and
            # insert the rest. Any other error fails again below, and the batch is
            # then stored row by row (_store_batch).
            stored = await self._existing_messages(tx, list(firsts))
            stored_before = set(stored)
            fresh = [message for message in candidates if message.key not in stored_before]
            if fresh:
                stored.update(await self._insert_fresh(tx, fresh))
        new = [stored[key] for key in firsts if key not in stored_before]
        if new:
            await self._events.append_message_events(tx, new)
        results = []
        announced: set[MessageKey] = set()
        for message in batch:
            duplicate = message.key in stored_before or message.key in announced
            announced.add(message.key)
            results.append(SendResult(stored[message.key], duplicate=duplicate))
        return results

    async def _existing_messages(
        self, tx: Cursorish, keys: Sequence[MessageKey]
    ) -> dict[MessageKey, StoredMessage]:
        matches = " OR ".join("(m.sender_id = ? AND m.client_message_id = ?)" for _ in keys)
        rows = await tx.fetch_all(
            self._tables.sql(f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} WHERE {matches}"),
            [part for key in keys for part in key],
        )
        found = (self._tables.message(row) for row in rows)
        return {(str(m.user_id), m.client_message_id): m for m in found}

    async def _insert_fresh(
        self, tx: Cursorish, fresh: Sequence[NewMessage]
    ) -> dict[MessageKey, StoredMessage]:
        rows = ", ".join("(?, ?, ?, ?, ?, ?, ?, ?)" for _ in fresh)
        returned = await tx.fetch_all(
            self._tables.sql(
                "INSERT INTO {p}messages (conversation_id, sender_id, sender_name, "
                "client_message_id, text, created_at_ms, reply_to_id, mentions) "
                f"VALUES {rows} RETURNING id, sender_id, client_message_id"
            ),
            [value for m in fresh for value in _row(m)],
        )
        ids = {(str(row[1]), str(row[2])): int(row[0]) for row in returned}
        return {m.key: _stored(m, ids[m.key]) for m in fresh}

    async def _store_one(self, message: NewMessage) -> SendResult:
        async with self._engine.transaction() as tx:
            inserted, message_id = await tx.execute(
                self._tables.insert_once(
                    "messages",
                    "conversation_id, sender_id, sender_name, client_message_id, text, "
                    "created_at_ms, reply_to_id, mentions",
                ),
                _row(message),
            )
            if inserted:
                assert message_id is not None
                stored = _stored(message, message_id)
                await self._events.append_message_events(tx, [stored])
                return SendResult(stored, duplicate=False)
            row = await tx.fetch_one(
                self._tables.sql(
                    f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} "
                    "WHERE m.sender_id = ? AND m.client_message_id = ?"
                ),
                message.key,
            )
        assert row is not None, "INSERT was ignored, so the first message must exist"
        return SendResult(self._tables.message(row), duplicate=True)


def _row(m: NewMessage) -> tuple[object, ...]:
    """The INSERT's values for one message (in _insert_fresh's column order)."""
    return (m.conversation_id, str(m.user_id), m.sender_name, m.client_message_id, m.text,
            m.created_at_ms, None if m.reply_to is None else m.reply_to.id,
            None if m.mentions is NO_MENTIONS else Tables.mentions_column(m.mentions))


def _stored(message: NewMessage, message_id: int) -> StoredMessage:
    return StoredMessage(
        message_id, message.conversation_id, message.user_id, message.sender_name,
        message.client_message_id, message.text, message.created_at_ms,
        reply_to=message.reply_to, mentions=message.mentions,
    )
