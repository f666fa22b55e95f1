"""Sends that arrive together are stored in shared transactions (storage/group_commit.py),
each answered only after its own row committed; run once per backend."""

from __future__ import annotations

import asyncio

import pytest

from ecigdis_ws.clock import ManualClock
from ecigdis_ws.errors import StorageUnavailable
from ecigdis_ws.storage.base import Storage
from ecigdis_ws.storage.group_commit import MAX_BATCH
from ecigdis_ws.storage.sql import SqlStorage
from tests.storage.conftest import Backend
from tests.support import wait_until

NOW_MS = 1_764_064_800_000


async def test_concurrent_sends_get_ids_in_the_order_they_were_submitted(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("busy", [1, 2, 3], NOW_MS)
    count = MAX_BATCH * 2 + 7  # more than one batch
    results = await asyncio.gather(*(
        storage.messages.store_message(conversation, 1 + i % 3, "u", f"c{i}", f"#{i}", NOW_MS + i)
        for i in range(count)
    ))
    ids = [result.message.id for result in results]
    assert ids == sorted(ids) and len(set(ids)) == count
    assert not any(result.duplicate for result in results)
    replay = await storage.messages.messages_after(conversation, 0, count + 10)
    assert [m.text for m in replay] == [f"#{i}" for i in range(count)]


async def test_the_same_send_twice_in_one_batch_is_stored_once(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("twice", [1], NOW_MS)
    first, again, other = await asyncio.gather(
        storage.messages.store_message(conversation, 1, "u", "same", "one", NOW_MS),
        storage.messages.store_message(conversation, 1, "u", "same", "retry", NOW_MS + 1),
        storage.messages.store_message(conversation, 1, "u", "other", "two", NOW_MS + 2),
    )
    assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
    assert again.message == first.message and again.message.text == "one"
    assert [m.text for m in await storage.messages.messages_after(
        conversation, 0, 10
    )] == ["one", "two"]


async def test_a_batch_mixing_stored_and_new_sends_flags_only_the_stored(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("mixed", [1, 2], NOW_MS)
    earlier = await storage.messages.store_message(conversation, 1, "u", "old", "old", NOW_MS)
    repeat, fresh = await asyncio.gather(
        storage.messages.store_message(conversation, 1, "u", "old", "old again", NOW_MS + 1),
        storage.messages.store_message(
            conversation, 2, "v", "old", "same id, other sender", NOW_MS + 2
        ),
    )
    assert repeat.duplicate and repeat.message == earlier.message
    assert not fresh.duplicate and fresh.message.id > earlier.message.id


async def test_a_row_that_cannot_be_stored_fails_only_its_own_send(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("bad row", [1], NOW_MS)
    no_name: str = None  # type: ignore[assignment]  # violates NOT NULL on every backend
    good, bad, also_good = await asyncio.gather(
        storage.messages.store_message(conversation, 1, "u", "a", "a", NOW_MS),
        storage.messages.store_message(conversation, 1, no_name, "b", "b", NOW_MS),
        storage.messages.store_message(conversation, 1, "u", "c", "c", NOW_MS),
        return_exceptions=True,
    )
    assert isinstance(bad, Exception) and not isinstance(bad, StorageUnavailable)
    assert not isinstance(good, BaseException) and not isinstance(also_good, BaseException)
    stored = await storage.messages.messages_after(conversation, 0, 10)
    assert [m.text for m in stored] == ["a", "c"]


async def test_a_send_whose_caller_gave_up_before_its_batch_began_is_not_stored(
    storage: Storage, backend: Backend
) -> None:
    conversation = await storage.conversations.create_conversation("late", [1], NOW_MS)
    with backend.hold_write_lock():  # the first batch waits on the lock...
        blocked = asyncio.ensure_future(
            storage.messages.store_message(conversation, 1, "u", "first", "first", NOW_MS)
        )
        assert isinstance(storage, SqlStorage)
        await wait_until(lambda: storage.messages_being_written == 1)
        # ...while this send queues behind it and is abandoned by its caller.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await storage.messages.store_message(conversation, 1, "u", "abandoned", "x", NOW_MS)
    await asyncio.gather(blocked, return_exceptions=True)
    texts = [m.text for m in await storage.messages.messages_after(conversation, 0, 10)]
    assert "x" not in texts


async def test_a_send_past_its_deadline_while_queued_fails_and_is_never_written(
    storage_on_clock: Storage, backend: Backend, clock: ManualClock
) -> None:
    storage = storage_on_clock
    conversation = await storage.conversations.create_conversation("deadline", [1], NOW_MS)
    with backend.hold_write_lock():
        blocked = asyncio.ensure_future(
            storage.messages.store_message(conversation, 1, "u", "first", "first", NOW_MS)
        )
        assert isinstance(storage, SqlStorage)
        await wait_until(lambda: storage.messages_being_written == 1)
        late = asyncio.ensure_future(storage.messages.store_message(
            conversation, 1, "u", "late", "x", NOW_MS, deadline=clock.monotonic() + 0.1
        ))
        await wait_until(lambda: clock.pending == 1)  # queued, its deadline armed
        clock.advance(0.099)
        await asyncio.sleep(0)
        assert not late.done()
        clock.advance(0.001)
        # answered at its deadline by the group commit's timer, the lock still held
        with pytest.raises(TimeoutError):
            await late
    await asyncio.gather(blocked, return_exceptions=True)
    texts = [m.text for m in await storage.messages.messages_after(conversation, 0, 10)]
    assert texts == ["first"]


async def test_a_send_whose_deadline_passes_during_its_commit_is_answered_at_the_deadline(
    storage_on_clock: Storage, backend: Backend, clock: ManualClock
) -> None:
    storage = storage_on_clock
    conversation = await storage.conversations.create_conversation("deadline", [1], NOW_MS)
    with backend.hold_write_lock():
        writing = asyncio.ensure_future(storage.messages.store_message(
            conversation, 1, "u", "slow", "slow", NOW_MS, deadline=clock.monotonic() + 0.1
        ))
        assert isinstance(storage, SqlStorage)
        await wait_until(lambda: storage.messages_being_written == 1)
        clock.advance(0.1)
        with pytest.raises(TimeoutError):
            await writing
    # Whether its row committed after the answer is the engine's business; a retry
    # with the same key is what tells (services/messages.py remembers it).


async def test_a_deadline_already_past_fails_at_once_and_writes_nothing(
    storage_on_clock: Storage, clock: ManualClock
) -> None:
    storage = storage_on_clock
    conversation = await storage.conversations.create_conversation("deadline", [1], NOW_MS)
    with pytest.raises(TimeoutError):
        await storage.messages.store_message(conversation, 1, "u", "gone", "gone", NOW_MS,
                                    deadline=clock.monotonic())
    assert await storage.messages.messages_after(conversation, 0, 10) == []
    assert clock.pending == 0  # nothing armed for it


async def test_deadlines_far_off_do_not_delay_the_answer(
    storage_on_clock: Storage, clock: ManualClock
) -> None:
    storage = storage_on_clock
    conversation = await storage.conversations.create_conversation("deadline", [1], NOW_MS)
    results = await asyncio.gather(*(
        storage.messages.store_message(conversation, 1, "u", f"k{i}", f"t{i}", NOW_MS,
                              deadline=clock.monotonic() + 30)
        for i in range(20)
    ))
    assert [r.message.text for r in results] == [f"t{i}" for i in range(20)]
    assert clock.pending == 1  # one timer kept the twenty deadlines
