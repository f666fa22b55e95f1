"""The REST API's services (event feed, inbox, server API) built on a service
harness by `ChatServices.build`, as the app builds them, and what a test needs
to watch a long-poll wait.

The app subscribes `ServerApiService.delivered` to the `DeliveryNotifier`, which
the fan-out manager tells of every delivery; the harness's `RecordingManager`
tells it of every emit too.
"""

from __future__ import annotations

import asyncio

from ecigdis_ws.domain import Actor, FeedEvent, StoredMessage, UserId
from ecigdis_ws.services.container import ChatServices
from ecigdis_ws.services.event_feed import EventFeed
from ecigdis_ws.services.server_api import NO_SOCKET
from ecigdis_ws.storage.sql import SqlStorage
from tests.services.conftest import ServiceHarness

# Bounds a hang only: a poll expected to answer does so in milliseconds.
HANG_S = 5.0

Poll = asyncio.Task[tuple[int, list[FeedEvent]]]


def rest_services(harness: ServiceHarness) -> ChatServices:
    """The REST API's services of the harness's node (`feed`, `server`, `inbox`,
    `polls`), built and told of every delivery as the composition root does."""
    return harness.chat


def rest_actor(user_id: UserId) -> Actor:
    """A user acting over REST (from no socket), as the REST routes build it."""
    return Actor(NO_SOCKET, user_id, f"user{user_id}")


def start_poll(feed: EventFeed, user_id: UserId, cursor: int | None) -> Poll:
    return asyncio.create_task(feed.poll(user_id, cursor))


def _parked(poll: Poll) -> bool:
    """The poll is suspended in its wait for a wake-up, and no wake-up is pending.

    (Read from the poll's own coroutine: `EventFeed.poll` waits, inside
    `poll_page`, on an `asyncio.Event`; while it reads the log it is suspended
    elsewhere. The feed's `all_asleep` speaks for every poll at once, and is true
    before this one has even registered.)
    """
    awaiting = poll.get_coro().cr_await  # type: ignore[union-attr]
    if getattr(awaiting, "__qualname__", None) == "EventFeed.poll_page":
        awaiting = awaiting.cr_await
    if getattr(awaiting, "__qualname__", None) != "Event.wait":
        return False
    event: asyncio.Event = awaiting.cr_frame.f_locals["self"]
    return not event.is_set()


async def until_parked(poll: Poll) -> None:
    """Let the poll run until it has answered or waits again with nothing to do:
    what it does with the wake-ups and log so far is then done. Only the event
    loop turns meanwhile; no time passes on any clock."""

    async def spin() -> None:
        while not poll.done() and not _parked(poll):  # noqa: ASYNC110 - no event for it
            await asyncio.sleep(0)

    await asyncio.wait_for(spin(), HANG_S)


async def answer(poll: Poll) -> tuple[int, list[FeedEvent]]:
    return await asyncio.wait_for(poll, HANG_S)


async def log_event(
    harness: ServiceHarness, event_id: int, conversation_id: int, user_id: UserId,
    created_at_ms: int,
) -> None:
    """A read-receipt row with a chosen id in the event log, as the transaction that
    was handed that id commits it. SQLite hands out ids in commit order; this is how
    a test gets the gaps MariaDB's autoincrement leaves (an id taken by a transaction
    still open, or rolled back)."""
    storage = harness.storage
    assert isinstance(storage, SqlStorage)
    await storage.engine.execute(
        f"INSERT INTO {harness.settings.db_table_prefix}events (id, conversation_id, kind, "
        "message_id, user_id, emoji, action, created_at_ms) "
        "VALUES (?, ?, 'read', ?, ?, NULL, NULL, ?)",
        (event_id, conversation_id, event_id, str(user_id), created_at_ms),
    )


async def log_receipts(
    harness: ServiceHarness, conversation_id: int, user_id: UserId, count: int
) -> None:
    """`count` read-receipt rows of one conversation, committed together, now."""
    storage = harness.storage
    assert isinstance(storage, SqlStorage)
    rows = ", ".join("(?, 'read', ?, ?, ?)" for _ in range(count))
    params: list[object] = []
    for n in range(count):
        params += [conversation_id, n + 1, str(user_id), harness.now_ms]
    await storage.engine.execute(
        f"INSERT INTO {harness.settings.db_table_prefix}events (conversation_id, kind, "
        f"message_id, user_id, created_at_ms) VALUES {rows}",
        params,
    )


async def send(harness: ServiceHarness, user: int, conversation: int, text: str) -> int:
    """A message sent as the REST API sends it (stored, then fanned out); its id."""
    return (await send_message(harness, user, conversation, text)).id


async def send_message(
    harness: ServiceHarness, user: int, conversation: int, text: str
) -> StoredMessage:
    """The same, the stored message itself."""
    result = await harness.chat.messages.send(rest_actor(user), conversation, text, text)
    return result.message
