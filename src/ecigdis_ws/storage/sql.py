"""The database in SQL: one store per topic (storage/base.py's protocols).

Each topic store (in this package, one module each) writes its SQL once for every
engine (Synapse's shape); this class only builds them on one engine and opens,
migrates and closes the whole. A service is handed the topic stores it uses.
"""

from __future__ import annotations

from ecigdis_ws.clock import Clock, SystemClock
from ecigdis_ws.settings import UserIdType
from ecigdis_ws.storage.conversations import ConversationStore
from ecigdis_ws.storage.engine import Engine
from ecigdis_ws.storage.event_log import EventLog
from ecigdis_ws.storage.message_changes import MessageChangeStore
from ecigdis_ws.storage.messages import MessageStore
from ecigdis_ws.storage.receipts import ReceiptStore
from ecigdis_ws.storage.schema import SchemaStore
from ecigdis_ws.storage.summaries import ConversationSummaries
from ecigdis_ws.storage.tables import Tables
from ecigdis_ws.storage.users import UserStore


class SqlStorage:
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
        self.changes = MessageChangeStore(tables, self.events)
        self.receipts = ReceiptStore(tables, self.events)
        self.reactions = self.receipts  # (one store keeps both: they share the table code)
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
