"""The Storage interface in SQL: one store per topic, composed behind `Storage`.

Each topic store (stores are in this package, one module each) writes its SQL
once for every engine (Synapse's shape); this class only builds them and hands
each call to its store, so services keep depending on `Storage` alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from ecigdis_ws.clock import Clock, SystemClock
from ecigdis_ws.domain import (
    ChangedBy,
    ConversationSummary,
    FeedEvent,
    NewMessage,
    ReactionAction,
    ReactionCount,
    ReadPosition,
    SendResult,
    StoredMessage,
    UserId,
)
from ecigdis_ws.settings import UserIdType
from ecigdis_ws.storage.base import Storage
from ecigdis_ws.storage.conversations import ConversationStore
from ecigdis_ws.storage.engine import Engine
from ecigdis_ws.storage.event_log import EventLog
from ecigdis_ws.storage.messages import MessageStore
from ecigdis_ws.storage.receipts import ReceiptStore
from ecigdis_ws.storage.schema import SchemaStore
from ecigdis_ws.storage.summaries import ConversationSummaries
from ecigdis_ws.storage.tables import Tables
from ecigdis_ws.storage.users import UserStore


class SqlStorage(Storage):
    def __init__(
        self,
        engine: Engine,
        table_prefix: str,
        user_id_type: UserIdType,
        clock: Clock | None = None,  # the deadlines' clock: the services' own
    ) -> None:
        clock = clock or SystemClock()
        self.tables = tables = Tables(engine, table_prefix, user_id_type)
        self._engine = engine
        self.schema = SchemaStore(tables)
        self.users = UserStore(tables, clock)
        self.events = EventLog(tables)
        self.conversations = ConversationStore(tables, self.events)
        self.summaries = ConversationSummaries(tables)
        self.messages = MessageStore(tables, self.events, clock)
        self.receipts = ReceiptStore(tables, self.events)
        # An event row inside the caller's open transaction (tools and tests that
        # write one beside their own change).
        self.append_event = self.events.append_event

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def messages_being_written(self) -> int:
        """Messages in the batch whose transaction has begun and not yet ended."""
        return self.messages.being_written

    async def close(self) -> None:
        await self.messages.close()
        await self.users.close()
        await self._engine.close()

    async def migrate(self) -> list[int]:
        return await self.schema.migrate()

    async def pending_migrations(self) -> list[int]:
        return await self.schema.pending_migrations()

    async def ping(self) -> None:
        await self.schema.ping()

    # -- users --------------------------------------------------------------------

    async def upsert_user(self, user_id: UserId, name: str, now_ms: int) -> None:
        await self.users.upsert_user(user_id, name, now_ms)

    async def set_last_seen(self, user_id: UserId, now_ms: int) -> None:
        await self.users.set_last_seen(user_id, now_ms)

    # -- conversations and members --------------------------------------------------

    async def create_conversation(
        self, title: str, member_ids: Sequence[UserId], now_ms: int,
        changed_by: ChangedBy | None = None,
    ) -> int:
        return await self.conversations.create_conversation(title, member_ids, now_ms, changed_by)

    async def ensure_conversation(self, conversation_id: int, now_ms: int) -> None:
        await self.conversations.ensure_conversation(conversation_id, now_ms)

    async def add_member(
        self, conversation_id: int, user_id: UserId, now_ms: int, max_members: int | None = None,
        changed_by: ChangedBy | None = None,
    ) -> bool:
        return await self.conversations.add_member(
            conversation_id, user_id, now_ms, max_members, changed_by
        )

    async def add_members(
        self, conversation_id: int, user_ids: Sequence[UserId], now_ms: int
    ) -> int:
        return await self.conversations.add_members(conversation_id, user_ids, now_ms)

    async def remove_member(
        self, conversation_id: int, user_id: UserId, changed_by: ChangedBy | None = None,
        now_ms: int = 0,
    ) -> bool:
        return await self.conversations.remove_member(conversation_id, user_id, changed_by, now_ms)

    async def conversation_title(self, conversation_id: int) -> str | None:
        return await self.conversations.conversation_title(conversation_id)

    async def is_member(self, conversation_id: int, user_id: UserId) -> bool:
        return await self.conversations.is_member(conversation_id, user_id)

    async def conversation_exists(self, conversation_id: int) -> bool:
        return await self.conversations.conversation_exists(conversation_id)

    async def oldest_conversation_titled(self, title: str) -> int | None:
        return await self.conversations.oldest_conversation_titled(title)

    async def member_ids(self, conversation_id: int) -> list[UserId]:
        return await self.conversations.member_ids(conversation_id)

    async def contact_ids(self, user_id: UserId) -> list[UserId]:
        return await self.conversations.contact_ids(user_id)

    async def conversation_ids_of(self, user_id: UserId) -> set[int]:
        return await self.conversations.conversation_ids_of(user_id)

    async def list_conversations(self, user_id: UserId, limit: int) -> list[ConversationSummary]:
        return await self.summaries.list_conversations(user_id, limit)

    # -- messages -------------------------------------------------------------------

    async def store_message(
        self,
        conversation_id: int,
        user_id: UserId,
        sender_name: str,
        client_message_id: str,
        text: str,
        now_ms: int,
        deadline: float | None = None,
    ) -> SendResult:
        return await self.messages.store(NewMessage(
            conversation_id, user_id, sender_name, client_message_id, text, now_ms
        ), deadline)

    async def messages_after(
        self, conversation_id: int, after_id: int, limit: int
    ) -> list[StoredMessage]:
        return await self.messages.messages_after(conversation_id, after_id, limit)

    async def message_in_conversation(self, conversation_id: int, message_id: int) -> bool:
        return await self.messages.message_in_conversation(conversation_id, message_id)

    async def messages_page(
        self, conversation_id: int, after_id: int | None, before_id: int | None, limit: int
    ) -> list[StoredMessage]:
        return await self.messages.messages_page(conversation_id, after_id, before_id, limit)

    # -- receipts and reactions -----------------------------------------------------

    async def advance_read(
        self, conversation_id: int, user_id: UserId, message_id: int, now_ms: int | None = None
    ) -> bool:
        return await self.receipts.advance_read(conversation_id, user_id, message_id, now_ms)

    async def last_read(self, conversation_id: int, user_id: UserId) -> int | None:
        return await self.receipts.last_read(conversation_id, user_id)

    async def toggle_reaction(
        self, message_id: int, user_id: UserId, emoji: str, now_ms: int
    ) -> ReactionAction:
        return await self.receipts.toggle_reaction(message_id, user_id, emoji, now_ms)

    async def reactions(self, message_id: int) -> list[tuple[UserId, str]]:
        return await self.receipts.reactions(message_id)

    async def reactions_of(
        self, message_ids: Sequence[int]
    ) -> dict[int, tuple[ReactionCount, ...]]:
        return await self.receipts.reactions_of(message_ids)

    async def read_positions(self, conversation_id: int) -> list[ReadPosition]:
        return await self.receipts.read_positions(conversation_id)

    # -- the event log --------------------------------------------------------------

    async def event_log_last_id(self) -> int:
        return await self.events.event_log_last_id()

    async def event_log_ids(self, after_id: int, limit: int) -> list[tuple[int, int]]:
        return await self.events.event_log_ids(after_id, limit)

    async def event_log_id_before(self, created_before_ms: int) -> int:
        return await self.events.event_log_id_before(created_before_ms)

    async def events_for_user(
        self, user_id: UserId, after_id: int, up_to_id: int, limit: int
    ) -> list[FeedEvent]:
        return await self.events.events_for_user(user_id, after_id, up_to_id, limit)

    # -- retention ------------------------------------------------------------------

    async def event_log_pruned_through(self) -> int:
        return await self.events.event_log_pruned_through()

    async def prune_event_log(self, created_before_ms: int, batch: int) -> int:
        return await self.events.prune_event_log(created_before_ms, batch)

    async def prune_messages(self, created_before_ms: int, batch: int) -> int:
        return await self.messages.prune_messages(created_before_ms, batch)
