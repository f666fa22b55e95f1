"""MessageService: store first, then fan out; idempotent per (user, client id)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager

import pytest

from ecigdis_ws.errors import ChatError, ErrorCode, StorageUnavailable
from tests.services.conftest import ServiceHarness
from tests.support import wait_until


async def test_a_sent_message_reaches_the_other_members_in_the_room_not_the_sender(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)

    result = await harness.send(alice, conversation, "hello", "m-1")

    assert not result.duplicate
    assert [m["text"] for m in harness.received(bob, "message:new")] == ["hello"]
    assert harness.received(alice, "message:new") == []


# -- helpers --------------------------------------------------------------------------


async def stored_texts(harness: ServiceHarness, conversation: int) -> list[str]:
    return [m.text for m in await harness.storage.messages.messages_after(conversation, 0, 100)]


def stored_count(harness: ServiceHarness) -> float:
    value = harness.chat.metrics.registry.get_sample_value("ecigdis_ws_messages_stored_total")
    return value or 0.0


@asynccontextmanager
async def database_full(harness: ServiceHarness) -> AsyncIterator[None]:
    """Writes fail with SQLite's "database or disk is full", which the storage reports
    as StorageUnavailable: a real outage of the real database, made by capping the
    writer connection's file at its present size (max_page_count is clamped up to it).
    Only writes that need a new page fail, so the text sent meanwhile must be large."""
    await harness.storage.engine.execute("PRAGMA max_page_count = 1")  # type: ignore[attr-defined]
    try:
        yield
    finally:
        await harness.storage.engine.execute(  # type: ignore[attr-defined]
            "PRAGMA max_page_count = 1073741823"
        )


BIG = "x" * 100_000  # needs new pages, so it fails while the database is full


@contextmanager
def write_lock_held(harness: ServiceHarness) -> Iterator[None]:
    """Another connection holds the SQLite database's write lock: stores wait on it."""
    conn = sqlite3.connect(harness.settings.database_url.removeprefix("sqlite:///"),
                           isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


# -- tests ----------------------------------------------------------------------------


async def test_the_message_is_stored_with_the_senders_name_and_the_clocks_time(
    harness: ServiceHarness,
) -> None:
    alice = await harness.user(1, "Alice")
    conversation = await harness.conversation(1, 2)
    await harness.advance(1.5)

    result = await harness.send(alice, conversation, "hello", "m-1")

    [message] = await harness.storage.messages.messages_after(conversation, 0, 10)
    assert message == result.message
    assert (message.user_id, message.sender_name, message.client_message_id, message.text) == (
        1, "Alice", "m-1", "hello"
    )
    assert message.created_at_ms == 1_800_000_001_500


async def test_message_new_carries_the_whole_message_with_the_client_id_as_sent(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1, "Alice"), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)

    result = await harness.send(alice, conversation, "hello", 42)

    assert harness.received(bob, "message:new") == [{
        "id": result.message.id,
        "messageId": 42,  # a number stays a number on the live event
        "conversationId": conversation,
        "userId": 1,
        "senderName": "Alice",
        "text": "hello",
        "createdAt": "2027-01-15T08:00:00.000Z",
    }]


async def test_the_senders_other_sockets_in_the_room_receive_the_message(
    harness: ServiceHarness,
) -> None:
    alice, alice_tab = await harness.user(1), await harness.user(1)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, alice_tab)

    await harness.send(alice, conversation, "from the phone", "m-1")

    assert [m["text"] for m in harness.received(alice_tab, "message:new")] == ["from the phone"]
    assert harness.received(alice, "message:new") == []


async def test_members_whose_sockets_are_not_in_the_room_are_not_sent_the_message(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice)

    await harness.send(alice, conversation, "hello", "m-1")

    assert harness.received(bob, "message:new") == []
    assert await stored_texts(harness, conversation) == ["hello"]


async def test_a_resent_client_message_id_is_a_duplicate_and_is_not_fanned_out_again(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)
    first = await harness.send(alice, conversation, "hello", "m-1")

    again = await harness.send(alice, conversation, "hello, edited", "m-1")

    assert again.duplicate is True
    assert again.message == first.message  # the stored message, text and all
    assert [m["text"] for m in harness.received(bob, "message:new")] == ["hello"]
    assert await stored_texts(harness, conversation) == ["hello"]
    assert stored_count(harness) == 1


async def test_two_concurrent_sends_of_one_client_message_id_store_and_announce_it_once(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)

    results = await asyncio.gather(
        harness.send(alice, conversation, "hello", "m-1"),
        harness.send(alice, conversation, "hello", "m-1"),
    )

    assert sorted(result.duplicate for result in results) == [False, True]
    assert results[0].message == results[1].message
    assert [m["id"] for m in harness.received(bob, "message:new")] == [results[0].message.id]
    assert await stored_texts(harness, conversation) == ["hello"]


async def test_client_message_ids_compare_as_text(harness: ServiceHarness) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)
    first = await harness.send(alice, conversation, "five", 5)

    again = await harness.send(alice, conversation, "five", "5")

    assert again.duplicate is True and again.message.id == first.message.id
    assert len(harness.received(bob, "message:new")) == 1


async def test_the_same_client_message_id_from_another_user_is_a_new_message(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)
    from_alice = await harness.send(alice, conversation, "a", "m-1")

    from_bob = await harness.send(bob, conversation, "b", "m-1")

    assert from_bob.duplicate is False
    assert from_bob.message.id != from_alice.message.id
    assert [m["text"] for m in harness.received(alice, "message:new")] == ["b"]
    assert await stored_texts(harness, conversation) == ["a", "b"]


async def test_messages_get_increasing_ids_in_the_order_they_were_sent(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)

    results = [await harness.send(alice, conversation, f"n{i}", f"m{i}") for i in range(5)]

    ids = [result.message.id for result in results]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [m["id"] for m in harness.received(bob, "message:new")] == ids


async def test_a_non_member_send_is_forbidden_and_nothing_is_stored_or_fanned_out(
    harness: ServiceHarness,
) -> None:
    alice, mallory = await harness.user(1), await harness.user(9)
    conversation = await harness.conversation(1)
    await harness.join(conversation, alice)

    with pytest.raises(ChatError) as refused:
        await harness.send(mallory, conversation, "let me in", "m-1")

    assert refused.value.code == ErrorCode.FORBIDDEN
    assert await stored_texts(harness, conversation) == []
    assert harness.received(alice, "message:new") == []
    assert stored_count(harness) == 0


async def test_a_send_that_failed_unavailable_stores_nothing_and_its_retry_is_announced(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)

    async with database_full(harness):
        with pytest.raises(StorageUnavailable):
            await harness.send(alice, conversation, BIG, "m-1")
    assert await stored_texts(harness, conversation) == []
    assert harness.received(bob, "message:new") == []

    retry = await harness.send(alice, conversation, BIG, "m-1")

    assert retry.duplicate is False
    assert [m["id"] for m in harness.received(bob, "message:new")] == [retry.message.id]
    assert stored_count(harness) == 1


async def test_a_send_still_unstored_at_db_timeout_ms_on_the_services_clock_is_unavailable(
    make_harness: Callable[..., AbstractAsyncContextManager[ServiceHarness]],
) -> None:
    # A minute: far past this test's real duration, so only the clock can end the wait.
    async with make_harness(DB_TIMEOUT_MS="60000") as harness:
        alice, bob = await harness.user(1), await harness.user(2)
        conversation = await harness.conversation(1, 2)
        await harness.join(conversation, alice, bob)
        with write_lock_held(harness):
            sending = asyncio.ensure_future(harness.send(alice, conversation, "held", "m-1"))
            await wait_until(lambda: harness.storage.messages_being_written == 1)
            await harness.advance(59.99)
            assert not sending.done()
            await harness.advance(0.01)
            await wait_until(sending.done)  # the clock ended the wait, the lock still held
            assert isinstance(sending.exception(), StorageUnavailable)
        assert harness.received(bob, "message:new") == []

        retry = await harness.send(alice, conversation, "held", "m-1")

        assert [m["id"] for m in harness.received(bob, "message:new")] == [retry.message.id]
        assert await stored_texts(harness, conversation) == ["held"]


async def test_a_retry_announces_a_message_stored_by_an_attempt_that_answered_unavailable(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)
    async with database_full(harness):
        with pytest.raises(StorageUnavailable):
            await harness.send(alice, conversation, BIG, "m-1")
    # Faked: the failed attempt's COMMIT reached the database and only its answer was
    # lost. SQLite cannot lose an answer, so the row it would have left is written here.
    landed = await harness.storage.messages.store_message(
        conversation, 1, "user1", "m-1", BIG, harness.now_ms
    )

    retry = await harness.send(alice, conversation, BIG, "m-1")

    assert retry.duplicate is True
    assert retry.message == landed.message
    assert [m["id"] for m in harness.received(bob, "message:new")] == [landed.message.id]


async def test_once_the_retry_announced_it_a_further_duplicate_is_not_announced_again(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)
    async with database_full(harness):
        with pytest.raises(StorageUnavailable):
            await harness.send(alice, conversation, BIG, "m-1")
    # Faked as above: the failed attempt's row did land.
    await harness.storage.messages.store_message(
        conversation, 1, "user1", "m-1", BIG, harness.now_ms
    )
    await harness.send(alice, conversation, BIG, "m-1")

    again = await harness.send(alice, conversation, BIG, "m-1")

    assert again.duplicate is True
    assert len(harness.received(bob, "message:new")) == 1


async def test_an_unavailable_send_of_one_user_does_not_make_anothers_duplicate_announced(
    harness: ServiceHarness,
) -> None:
    alice, bob, carol = await harness.user(1), await harness.user(2), await harness.user(3)
    conversation = await harness.conversation(1, 2, 3)
    await harness.join(conversation, alice, bob, carol)
    await harness.send(bob, conversation, "bob's", "m-1")
    async with database_full(harness):
        with pytest.raises(StorageUnavailable):
            await harness.send(alice, conversation, BIG, "m-1")  # same client id, alice

    again = await harness.send(bob, conversation, "bob's", "m-1")

    assert again.duplicate is True
    assert [m["text"] for m in harness.received(carol, "message:new")] == ["bob's"]
