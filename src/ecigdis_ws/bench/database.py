"""--setup: the bench's conversations and memberships in the server's database.

Ids are deterministic (plan.py), so a second run finds the conversations of the first
and only adds what is missing. It goes through the Storage interface, like
`ecigdis-ws conversation create`, against the DATABASE_URL and DB_TABLE_PREFIX of the
settings; a server that caches membership must not have been asked about these users
before they were added.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ecigdis_ws.bench.plan import BenchError, BenchOptions, groups
from ecigdis_ws.settings import Settings
from ecigdis_ws.storage.factory import open_storage
from ecigdis_ws.storage.sql import SqlStorage

# Conversations checked or created at once: enough to keep a MariaDB pool busy,
# harmless for SQLite, whose single connection takes them in turn.
SETUP_CONCURRENCY = 16


@dataclass(frozen=True)
class SetupResult:
    conversations: int
    created: int  # conversations that did not exist
    members_added: int
    extra_members: int  # members found that this run does not use (other --user-base)
    seconds: float


async def _ensure(storage: SqlStorage, conversation_id: int, members: list[int],
                  now_ms: int) -> tuple[bool, int, int]:
    present = {str(m) for m in await storage.conversations.member_ids(conversation_id)}
    wanted = [m for m in members if str(m) not in present]
    created = False
    if not present and not await storage.conversations.conversation_exists(conversation_id):
        await storage.conversations.ensure_conversation(conversation_id, now_ms)
        created = True
    # One statement for a broadcast's 1,000, not 1,000 transactions.
    added = await storage.conversations.add_members(
        conversation_id, wanted, now_ms
    ) if wanted else 0
    extra = len(present - {str(m) for m in members})
    return created, added, extra


async def setup_conversations(options: BenchOptions, settings: Settings) -> SetupResult:
    """Make every bench conversation exist with exactly its members (plus any extras)."""
    started = time.monotonic()
    storage = await open_storage(settings)
    try:
        pending = await storage.pending_migrations()
        if pending:
            raise BenchError(f"the database needs migrations {pending}: run "
                               "`ecigdis-ws migrate` (or start the server) first")
        limit = asyncio.Semaphore(SETUP_CONCURRENCY)
        now_ms = int(time.time() * 1000)

        async def one(conversation_id: int, members: list[int]) -> tuple[bool, int, int]:
            async with limit:
                return await _ensure(storage, conversation_id, members, now_ms)

        results = await asyncio.gather(
            *(one(cid, members) for cid, members in groups(options).items()))
    finally:
        await storage.close()
    return SetupResult(
        conversations=len(results),
        created=sum(r[0] for r in results),
        members_added=sum(r[1] for r in results),
        extra_members=sum(r[2] for r in results),
        seconds=round(time.monotonic() - started, 2),
    )
