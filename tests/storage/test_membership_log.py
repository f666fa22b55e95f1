"""Membership changes in the event log (migration 7), on both backends: a change
given `changed_by` writes its row in its own transaction (one per create, read by
the members since the creation; one per member added or removed by the server
API, read by that member), and `events_for_user` gives each user their own changes beside their
conversations' events, in log order."""

from __future__ import annotations

from ecigdis_ws.domain import ChangedBy, FeedEvent, LoggedMembership, UserId
from ecigdis_ws.storage.base import Storage
from ecigdis_ws.storage.sql import SqlStorage

NOW_MS = 1_700_000_000_000


async def feed(storage: Storage, user: UserId, after: int = 0, limit: int = 500) -> list[FeedEvent]:
    return await storage.events.events_for_user(
        user, after, await storage.events.event_log_last_id(), limit
    )


async def read_receipt(storage: Storage, conversation: int, message_id: int) -> None:
    """A read-receipt row of user 1, as `advance_read` writes it."""
    assert isinstance(storage, SqlStorage)
    async with storage.engine.transaction() as tx:
        await storage.append_event(tx, "read", conversation, message_id, 1, NOW_MS)


def wired(events: list[FeedEvent]) -> list[tuple[str, dict[str, object]]]:
    return [(e.wire()["event"], e.wire()["data"]) for e in events]


async def test_a_logged_create_gives_each_member_conversation_added(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation(
        "Ops", [1, 3, 2], NOW_MS, ChangedBy(1)
    )
    added = {"conversationId": conversation, "title": "Ops", "members": [1, 2, 3], "addedBy": 1}
    for user in (1, 2, 3):
        assert wired(await feed(storage, user)) == [("conversation:added", added)]
    assert await feed(storage, 4) == []


async def test_a_create_writes_one_row_however_many_members(storage: Storage) -> None:
    before = await storage.events.event_log_last_id()
    await storage.conversations.create_conversation(
        "big", list(range(1, 201)), NOW_MS, ChangedBy(1)
    )
    assert await storage.events.event_log_last_id() == before + 1


async def test_a_member_added_after_the_create_reads_their_own_row_not_the_creation(
    storage: Storage,
) -> None:
    conversation = await storage.conversations.create_conversation("Ops", [1], NOW_MS, ChangedBy(1))
    assert await storage.conversations.add_member(
        conversation, 2, NOW_MS + 1, None, ChangedBy(None)
    )
    assert wired(await feed(storage, 2)) == [
        ("conversation:added", {"conversationId": conversation, "title": "Ops",
                                "members": [1, 2], "addedBy": None})]
    # Removed and added back: the creation is no longer theirs either.
    assert await storage.conversations.remove_member(conversation, 1, ChangedBy(None), NOW_MS + 2)
    assert await storage.conversations.add_member(
        conversation, 1, NOW_MS + 3, None, ChangedBy(None)
    )
    assert [e.wire()["data"].get("addedBy") for e in await feed(storage, 1)] == [None, None]


async def test_unlogged_changes_write_nothing(storage: Storage) -> None:
    """Tools, the demo's Lobby and open access change memberships unannounced."""
    conversation = await storage.conversations.create_conversation("quiet", [1, 2], NOW_MS)
    await storage.conversations.add_member(conversation, 3, NOW_MS)
    await storage.conversations.remove_member(conversation, 2)
    assert await storage.events.event_log_last_id() == 0


async def test_the_server_apis_add_and_remove_are_for_that_user_alone(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("team", [1], NOW_MS)
    assert await storage.conversations.add_member(conversation, 2, NOW_MS, 10, ChangedBy(None))
    assert not await storage.conversations.add_member(conversation, 2, NOW_MS, 10, ChangedBy(None))
    assert await storage.conversations.remove_member(conversation, 2, ChangedBy(None), NOW_MS)
    # Removed although no longer a member: the row names the user, not the room.
    assert wired(await feed(storage, 2)) == [
        ("conversation:added", {"conversationId": conversation, "title": "team",
                                "members": [1], "addedBy": None}),
        ("conversation:removed", {"conversationId": conversation, "removedBy": None}),
    ]
    assert await feed(storage, 1) == []  # a member hears of others through the room


async def test_membership_rows_and_conversation_events_merge_in_log_order_within_the_limit(
    storage: Storage,
) -> None:
    shared = await storage.conversations.create_conversation("shared", [1, 2], NOW_MS)
    await read_receipt(storage, shared, 1)
    second = await storage.conversations.create_conversation("second", [1, 2], NOW_MS, ChangedBy(1))
    await read_receipt(storage, shared, 2)
    everything = await feed(storage, 2)
    assert [type(e).__name__ for e in everything] == ["LoggedEvent", "LoggedMembership",
                                                     "LoggedEvent"]
    assert [e.id for e in everything] == sorted(e.id for e in everything)
    # A page cut at 2 ends at the membership row; the next page starts after it.
    first_page = await feed(storage, 2, limit=2)
    assert first_page == everything[:2]
    assert isinstance(first_page[-1], LoggedMembership)
    assert first_page[-1].change.conversation_id == second
    assert await feed(storage, 2, after=first_page[-1].id) == everything[2:]
