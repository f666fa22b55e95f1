"""The Storage interface, as services see it; run once per backend in conftest.BACKENDS."""

from __future__ import annotations

import asyncio
import time

import pytest

from ecigdis_ws.errors import StorageUnavailable
from ecigdis_ws.storage.base import Storage
from ecigdis_ws.storage.migrations import LATEST_VERSION, MIGRATIONS
from tests.storage.conftest import Backend, OpenStorage

NOW_MS = 1_764_064_800_000  # 2025-11-25T10:00:00.000Z
# Four-byte UTF-8: a skin-toned emoji (two astral code points) and a musical G clef.
ASTRAL_TEXT = "👍🏽 𝄞"


# -- migrations ---------------------------------------------------------------------


ALL_VERSIONS = [m.version for m in MIGRATIONS]


async def test_fresh_database_has_every_version_pending(open_unmigrated: OpenStorage) -> None:
    fresh = await open_unmigrated()
    assert await fresh.pending_migrations() == ALL_VERSIONS == [1, 2, 3, 4, 5, 6, 7, 8]


async def test_migrate_applies_every_version_and_leaves_nothing_pending(
    open_unmigrated: OpenStorage,
) -> None:
    fresh = await open_unmigrated()
    assert await fresh.migrate() == ALL_VERSIONS
    assert await fresh.pending_migrations() == []
    assert ALL_VERSIONS[-1] == LATEST_VERSION


async def test_second_migrate_applies_nothing_and_keeps_data(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("kept", [1], NOW_MS)
    assert await storage.migrate() == []
    assert await storage.conversations.conversation_exists(conversation)
    assert await storage.conversations.member_ids(conversation) == [1]


async def test_concurrent_migrate_from_two_instances_applies_each_version_once(
    open_unmigrated: OpenStorage,
) -> None:
    first, second = await open_unmigrated(), await open_unmigrated()
    results = await asyncio.gather(first.migrate(), second.migrate())
    assert sorted(results) == [[], ALL_VERSIONS]
    assert await first.pending_migrations() == []
    assert await second.pending_migrations() == []
    conversation = await second.conversations.create_conversation("after race", [1, 2], NOW_MS)
    assert await first.conversations.member_ids(conversation) == [1, 2]


# -- conversations and members -------------------------------------------------------


async def test_create_conversation_returns_distinct_ids_that_exist(storage: Storage) -> None:
    one = await storage.conversations.create_conversation("one", [1], NOW_MS)
    two = await storage.conversations.create_conversation("two", [1], NOW_MS)
    assert isinstance(one, int)
    assert one != two
    assert await storage.conversations.conversation_exists(one)
    assert await storage.conversations.conversation_exists(two)
    assert not await storage.conversations.conversation_exists(max(one, two) + 1)


async def test_the_oldest_conversation_of_a_title_is_found_and_none_without_one(
    storage: Storage,
) -> None:
    # The demo's sign-in finds its Lobby this way (services/dev_accounts.py).
    assert await storage.conversations.oldest_conversation_titled("Lobby") is None
    await storage.conversations.create_conversation("Team", [1], NOW_MS)
    first = await storage.conversations.create_conversation("Lobby", [], NOW_MS)
    await storage.conversations.create_conversation("Lobby", [], NOW_MS)
    assert await storage.conversations.oldest_conversation_titled("Lobby") == first
    assert await storage.conversations.oldest_conversation_titled("Lobby 2") is None


async def test_create_conversation_lists_each_member_once(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("team", [3, 1, 2, 3, 1], NOW_MS)
    assert sorted(await storage.conversations.member_ids(conversation)) == [1, 2, 3]


async def test_is_member_is_true_only_for_that_conversations_members(storage: Storage) -> None:
    ours = await storage.conversations.create_conversation("ours", [1, 2], NOW_MS)
    theirs = await storage.conversations.create_conversation("theirs", [3], NOW_MS)
    assert await storage.conversations.is_member(ours, 1)
    assert await storage.conversations.is_member(ours, 2)
    assert not await storage.conversations.is_member(ours, 3)
    assert not await storage.conversations.is_member(theirs, 1)
    assert await storage.conversations.is_member(theirs, 3)


async def test_add_member_reports_whether_the_user_was_new(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("team", [1], NOW_MS)
    assert not await storage.conversations.is_member(conversation, 4)
    assert await storage.conversations.add_member(conversation, 4, NOW_MS) is True
    assert await storage.conversations.is_member(conversation, 4)
    assert await storage.conversations.add_member(conversation, 4, NOW_MS) is False
    assert await storage.conversations.add_member(conversation, 1, NOW_MS) is False
    assert sorted(await storage.conversations.member_ids(conversation)) == [1, 4]


async def test_add_members_adds_the_new_ones_in_bulk_and_counts_them(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("team", [1, 2], NOW_MS)
    assert await storage.conversations.add_members(conversation, [2, 3, 4, 3], NOW_MS) == 2
    assert await storage.conversations.add_members(
        conversation, list(range(1, 6001)), NOW_MS
    ) == 5996
    assert len(await storage.conversations.member_ids(conversation)) == 6000


async def test_int_user_ids_come_back_as_int(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("team", [10, 9], NOW_MS)
    members = await storage.conversations.member_ids(conversation)
    assert sorted(members) == [9, 10]
    assert all(type(member) is int for member in members)


# -- messages ------------------------------------------------------------------------


async def test_store_message_returns_the_stored_message_with_increasing_ids(
    storage: Storage,
) -> None:
    conversation = await storage.conversations.create_conversation("team", [1, 2], NOW_MS)
    results = [
        await storage.messages.store_message(
            conversation, 1 + i % 2, "Alice", f"c-{i}", f"#{i}", NOW_MS + i
        )
        for i in range(4)
    ]
    ids = [result.message.id for result in results]
    assert ids == sorted(ids)
    assert len(set(ids)) == 4
    assert not any(result.duplicate for result in results)
    first = results[0].message
    assert (first.conversation_id, first.user_id, first.sender_name) == (conversation, 1, "Alice")
    assert (first.client_message_id, first.text, first.created_at_ms) == ("c-0", "#0", NOW_MS)


async def test_same_user_and_client_id_returns_the_first_message_as_duplicate(
    storage: Storage,
) -> None:
    conversation = await storage.conversations.create_conversation("team", [1], NOW_MS)
    first = await storage.messages.store_message(conversation, 1, "Alice", "m-1", "first", NOW_MS)
    again = await storage.messages.store_message(
        conversation, 1, "Alice", "m-1", "second", NOW_MS + 5
    )
    assert again.duplicate is True
    assert again.message == first.message
    stored = await storage.messages.messages_after(conversation, 0, 100)
    assert [message.text for message in stored] == ["first"]


async def test_same_client_id_in_another_conversation_is_a_duplicate_of_the_first(
    storage: Storage,
) -> None:
    first_conversation = await storage.conversations.create_conversation("a", [1], NOW_MS)
    other_conversation = await storage.conversations.create_conversation("b", [1], NOW_MS)
    first = await storage.messages.store_message(
        first_conversation, 1, "Alice", "m-1", "hi", NOW_MS
    )
    again = await storage.messages.store_message(
        other_conversation, 1, "Alice", "m-1", "hey", NOW_MS
    )
    assert again.duplicate is True
    assert again.message == first.message
    assert again.message.conversation_id == first_conversation
    assert await storage.messages.messages_after(other_conversation, 0, 100) == []
    assert len(await storage.messages.messages_after(first_conversation, 0, 100)) == 1


async def test_same_client_id_from_two_users_stores_two_messages(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("team", [1, 2], NOW_MS)
    alice = await storage.messages.store_message(
        conversation, 1, "Alice", "m-1", "from Alice", NOW_MS
    )
    bob = await storage.messages.store_message(conversation, 2, "Bob", "m-1", "from Bob", NOW_MS)
    assert not bob.duplicate
    assert bob.message.id != alice.message.id
    stored = await storage.messages.messages_after(conversation, 0, 100)
    assert [(message.user_id, message.text) for message in stored] == [
        (1, "from Alice"),
        (2, "from Bob"),
    ]


async def test_four_byte_utf8_text_and_name_round_trip_byte_identical(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation(ASTRAL_TEXT, [1], NOW_MS)
    name = "Zoë 👩🏽‍💻"
    sent = await storage.messages.store_message(conversation, 1, name, "m-🎉", ASTRAL_TEXT, NOW_MS)
    [stored] = await storage.messages.messages_after(conversation, 0, 10)
    assert stored.text.encode("utf-8") == ASTRAL_TEXT.encode("utf-8")
    assert stored.sender_name.encode("utf-8") == name.encode("utf-8")
    assert stored.client_message_id == "m-🎉"
    # The duplicate path reads the row back from the database, too.
    again = await storage.messages.store_message(conversation, 1, name, "m-🎉", "other", NOW_MS)
    assert again.duplicate
    assert again.message.text.encode("utf-8") == ASTRAL_TEXT.encode("utf-8")
    assert again.message.id == sent.message.id


async def test_messages_after_is_ascending_limited_and_per_conversation(
    storage: Storage,
) -> None:
    conversation = await storage.conversations.create_conversation("team", [1], NOW_MS)
    other = await storage.conversations.create_conversation("other", [1], NOW_MS)
    ids: list[int] = []
    for i in range(5):
        result = await storage.messages.store_message(
            conversation, 1, "A", f"m-{i}", f"#{i}", NOW_MS
        )
        ids.append(result.message.id)
        await storage.messages.store_message(other, 1, "A", f"o-{i}", "elsewhere", NOW_MS)
    first_three = await storage.messages.messages_after(conversation, 0, 3)
    assert [message.id for message in first_three] == ids[:3]
    rest = await storage.messages.messages_after(conversation, ids[2], 10)
    assert [message.id for message in rest] == ids[3:]
    assert [message.text for message in rest] == ["#3", "#4"]
    assert await storage.messages.messages_after(conversation, ids[-1], 10) == []


async def test_message_in_conversation_checks_the_conversation(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("team", [1], NOW_MS)
    other = await storage.conversations.create_conversation("other", [1], NOW_MS)
    sent = await storage.messages.store_message(conversation, 1, "A", "m-1", "hi", NOW_MS)
    assert await storage.messages.message_in_conversation(conversation, sent.message.id)
    assert not await storage.messages.message_in_conversation(other, sent.message.id)
    assert not await storage.messages.message_in_conversation(conversation, sent.message.id + 1)


# -- read positions and reactions ----------------------------------------------------


async def test_advance_read_moves_forward_and_never_back(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("team", [1, 2], NOW_MS)
    ids = [
        (await storage.messages.store_message(
            conversation, 2, "B", f"m-{i}", "x", NOW_MS
        )).message.id
        for i in range(3)
    ]
    assert await storage.receipts.last_read(conversation, 1) is None
    assert await storage.receipts.advance_read(conversation, 1, ids[1]) is True
    assert await storage.receipts.last_read(conversation, 1) == ids[1]
    assert await storage.receipts.advance_read(conversation, 1, ids[0]) is False
    assert await storage.receipts.last_read(conversation, 1) == ids[1]
    assert await storage.receipts.advance_read(conversation, 1, ids[1]) is False
    assert await storage.receipts.advance_read(conversation, 1, ids[2]) is True
    assert await storage.receipts.last_read(conversation, 1) == ids[2]
    assert await storage.receipts.last_read(conversation, 2) is None


async def test_toggle_reaction_goes_added_removed_added(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("team", [1, 2], NOW_MS)
    message = (await storage.messages.store_message(
        conversation, 2, "B", "m-1", "x", NOW_MS
    )).message
    assert await storage.reactions.toggle_reaction(message.id, 1, "🎉", NOW_MS) == "added"
    assert await storage.reactions.reactions(message.id) == [(1, "🎉")]
    assert await storage.reactions.toggle_reaction(message.id, 1, "🎉", NOW_MS + 1) == "removed"
    assert await storage.reactions.reactions(message.id) == []
    assert await storage.reactions.toggle_reaction(message.id, 1, "🎉", NOW_MS + 2) == "added"
    assert await storage.reactions.reactions(message.id) == [(1, "🎉")]


async def test_reaction_emoji_round_trip_byte_identical_and_distinct(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("team", [1, 2], NOW_MS)
    message = (await storage.messages.store_message(
        conversation, 2, "B", "m-1", "x", NOW_MS
    )).message
    # The toned and the plain thumbs-up are different reactions, not one collated value.
    assert await storage.reactions.toggle_reaction(message.id, 1, "👍🏽", NOW_MS) == "added"
    assert await storage.reactions.toggle_reaction(message.id, 1, "👍", NOW_MS + 1) == "added"
    assert await storage.reactions.toggle_reaction(message.id, 2, "𝄞", NOW_MS + 2) == "added"
    reactions = await storage.reactions.reactions(message.id)
    assert [(user, emoji.encode("utf-8")) for user, emoji in reactions] == [
        (1, "👍🏽".encode()),
        (1, "👍".encode()),
        (2, "𝄞".encode()),
    ]


# -- settings that change storage ----------------------------------------------------


async def test_string_user_ids_stay_strings(open_unmigrated: OpenStorage) -> None:
    storage = await open_unmigrated(USER_ID_TYPE="string")
    await storage.migrate()
    conversation = await storage.conversations.create_conversation("team", ["alice", "007"], NOW_MS)
    assert sorted(await storage.conversations.member_ids(conversation)) == ["007", "alice"]
    assert await storage.conversations.is_member(conversation, "007")
    assert not await storage.conversations.is_member(conversation, "7")
    sent = await storage.messages.store_message(conversation, "007", "Bond", "m-1", "hi", NOW_MS)
    assert sent.message.user_id == "007"
    [stored] = await storage.messages.messages_after(conversation, 0, 10)
    assert stored.user_id == "007"
    duplicate = await storage.messages.store_message(
        conversation, "007", "Bond", "m-1", "hi", NOW_MS
    )
    assert duplicate.duplicate
    assert duplicate.message.user_id == "007"
    await storage.reactions.toggle_reaction(sent.message.id, "alice", "👍", NOW_MS)
    assert await storage.reactions.reactions(sent.message.id) == [("alice", "👍")]


async def test_locked_database_makes_store_message_unavailable_then_recovers(
    backend: Backend, open_unmigrated: OpenStorage
) -> None:
    timeout_ms = 300
    storage = await open_unmigrated(DB_TIMEOUT_MS=str(timeout_ms))
    await storage.migrate()
    conversation = await storage.conversations.create_conversation("team", [1], NOW_MS)
    with backend.hold_write_lock():
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            await storage.messages.store_message(conversation, 1, "A", "m-1", "blocked", NOW_MS)
        elapsed = time.monotonic() - started
    # It gave up after roughly DB_TIMEOUT_MS: neither at once nor after the default 3 s.
    assert 0.5 * timeout_ms / 1000 <= elapsed < 5 * timeout_ms / 1000
    assert await storage.messages.messages_after(conversation, 0, 10) == []
    after = await storage.messages.store_message(conversation, 1, "A", "m-1", "through", NOW_MS)
    assert after.duplicate is False
    assert [message.text for message in await storage.messages.messages_after(
        conversation, 0, 10
    )] == [
        "through"
    ]


async def test_ids_differing_only_by_trailing_spaces_stay_distinct(
    open_unmigrated: OpenStorage,
) -> None:
    storage = await open_unmigrated(USER_ID_TYPE="string")
    await storage.migrate()
    conversation = await storage.conversations.create_conversation("pad", ["bob"], NOW_MS)
    assert not await storage.conversations.is_member(conversation, "bob ")
    first = await storage.messages.store_message(conversation, "bob", "Bob", "m1", "one", NOW_MS)
    second = await storage.messages.store_message(conversation, "bob", "Bob", "m1 ", "two", NOW_MS)
    assert not second.duplicate and second.message.id != first.message.id


async def test_a_rename_changes_the_title_once_and_logs_it_once(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("old", [1, 2], NOW_MS)
    before = await storage.events.event_log_last_id()

    first = await storage.conversations.rename_conversation(conversation, "new", 1, NOW_MS)
    again = await storage.conversations.rename_conversation(conversation, "new", 2, NOW_MS)
    nowhere = await storage.conversations.rename_conversation(999_999, "new", 1, NOW_MS)

    assert (first, again, nowhere) == (True, False, False)
    assert await storage.conversations.conversation_title(conversation) == "new"
    [logged] = await storage.events.events_for_user(2, before, before + 10, 10)
    assert logged.wire() == {"event": "conversation:updated", "data": {
        "conversationId": conversation, "title": "new", "updatedBy": 1}}
