"""EventFeed: the REST long-poll. A poll answers the events of the user's
conversations after its cursor, read from the event log up to the settled
position (below which no id can still commit); with none, it waits, woken by this
node's deliveries and by a recheck timer, until LONG_POLL_TIMEOUT_MS runs out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager

import pytest

from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.fanout.base import conversation_room, user_room
from ecigdis_ws.services.event_feed import POLL_PAGE, RECHECK_S, SETTLE_MARGIN_MS, EventFeed
from tests.services.conftest import ServiceHarness
from tests.services.feed_support import (
    answer,
    log_event,
    log_receipts,
    rest_services,
    send,
    start_poll,
    until_parked,
)

HarnessFactory = Callable[..., AbstractAsyncContextManager[ServiceHarness]]


# -- answering at once ------------------------------------------------------------------


async def test_a_poll_without_a_cursor_answers_at_once_with_the_end_of_the_log(
    harness: ServiceHarness,
) -> None:
    feed = rest_services(harness).feed
    conversation = await harness.conversation(1, 2)
    await send(harness, 2, conversation, "one")
    last = await send(harness, 2, conversation, "two")

    assert await answer(start_poll(feed, 1, None)) == (last, [])


async def test_a_poll_without_a_cursor_on_an_empty_log_answers_zero(
    harness: ServiceHarness,
) -> None:
    feed = rest_services(harness).feed

    assert await answer(start_poll(feed, 1, None)) == (0, [])


async def test_a_poll_returns_at_once_when_events_are_already_after_the_cursor(
    harness: ServiceHarness,
) -> None:
    feed = rest_services(harness).feed
    conversation = await harness.conversation(1, 2)
    await send(harness, 2, conversation, "before")
    cursor, _ = await answer(start_poll(feed, 1, None))
    first = await send(harness, 2, conversation, "after-1")
    second = await send(harness, 1, conversation, "after-2")

    position, events = await answer(start_poll(feed, 1, cursor))

    assert position == second
    assert [(e.kind, e.message_id) for e in events] == [("message", first), ("message", second)]
    assert [e.message.text for e in events if e.message] == ["after-1", "after-2"]


async def test_a_poll_returns_only_its_users_conversations_and_moves_past_the_rest(
    harness: ServiceHarness,
) -> None:
    feed = rest_services(harness).feed
    mine = await harness.conversation(1, 3)
    theirs = await harness.conversation(1, 2)
    for_me = await send(harness, 1, mine, "for 3")
    last = await send(harness, 1, theirs, "not for 3")

    position, events = await answer(start_poll(feed, 3, 0))

    assert [e.message_id for e in events] == [for_me]
    assert position == last  # the next poll does not read "not for 3" again


async def test_a_cursor_ahead_of_the_event_log_is_refused(harness: ServiceHarness) -> None:
    feed = rest_services(harness).feed
    conversation = await harness.conversation(1, 2)
    last = await send(harness, 2, conversation, "only")

    with pytest.raises(ChatError) as refused:
        await feed.poll(1, last + 1)

    assert refused.value.code == ErrorCode.INVALID_PAYLOAD
    assert refused.value.message == "cursor is ahead of the event log: poll again without one"
    assert feed.waiting == 0


async def test_a_cursor_at_the_end_of_the_log_waits_for_what_comes_next(
    harness: ServiceHarness,
) -> None:
    feed = rest_services(harness).feed
    conversation = await harness.conversation(1, 2)
    last = await send(harness, 2, conversation, "seen")

    poll = start_poll(feed, 1, last)
    await until_parked(poll)
    assert not poll.done()
    assert feed.waiting == 1
    new = await send(harness, 2, conversation, "next")

    position, events = await answer(poll)
    assert (position, [e.message_id for e in events]) == (new, [new])
    assert feed.waiting == 0


async def test_a_full_page_answers_with_the_cursor_at_its_last_event(
    harness: ServiceHarness,
) -> None:
    feed = rest_services(harness).feed
    mine = await harness.conversation(1, 2)
    theirs = await harness.conversation(2, 3)
    await log_receipts(harness, mine, 2, POLL_PAGE + 3)  # ids 1 .. POLL_PAGE + 3
    await log_receipts(harness, theirs, 2, 10)  # and 10 more, not user 1's

    first_cursor, first = await answer(start_poll(feed, 1, 0))
    second_cursor, second = await answer(start_poll(feed, 1, first_cursor))

    assert [e.id for e in first] == list(range(1, POLL_PAGE + 1))
    assert first_cursor == POLL_PAGE  # not the settled end: the page stopped short of it
    assert [e.id for e in second] == [POLL_PAGE + 1, POLL_PAGE + 2, POLL_PAGE + 3]
    assert second_cursor == POLL_PAGE + 13


# -- waiting ----------------------------------------------------------------------------


async def test_a_waiting_poll_is_woken_by_a_delivery_to_one_of_its_conversations(
    harness: ServiceHarness,
) -> None:
    feed = rest_services(harness).feed
    conversation = await harness.conversation(1, 2)
    cursor, _ = await answer(start_poll(feed, 2, None))
    poll = start_poll(feed, 2, cursor)
    await until_parked(poll)
    assert not poll.done()

    sent = await send(harness, 1, conversation, "hi")  # the clock never moves

    await until_parked(poll)
    assert poll.done()
    position, events = poll.result()
    assert (position, [e.message_id for e in events]) == (sent, [sent])


async def test_a_delivery_to_another_conversation_leaves_the_poll_waiting(
    harness: ServiceHarness,
) -> None:
    feed = rest_services(harness).feed
    theirs = await harness.conversation(1, 2)
    mine = await harness.conversation(1, 3)
    cursor, _ = await answer(start_poll(feed, 3, None))
    poll = start_poll(feed, 3, cursor)
    await until_parked(poll)

    await send(harness, 1, theirs, "not for 3")
    await until_parked(poll)
    assert not poll.done()
    for_me = await send(harness, 1, mine, "for 3")

    position, events = await answer(poll)
    assert (position, [e.message_id for e in events]) == (for_me, [for_me])


async def test_a_held_poll_answers_empty_when_the_long_poll_timeout_runs_out(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(LONG_POLL_TIMEOUT_MS="5000") as harness:
        feed = rest_services(harness).feed
        await harness.conversation(1, 2)
        cursor, _ = await answer(start_poll(feed, 1, None))
        poll = start_poll(feed, 1, cursor)
        await until_parked(poll)

        await harness.advance(4.999)  # rechecks at 2 s and 4 s found nothing
        await until_parked(poll)
        assert not poll.done()
        await harness.advance(0.001)

        assert await answer(poll) == (cursor, [])
        assert feed.waiting == 0


async def test_a_poll_that_times_out_answers_a_cursor_past_other_conversations_events(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(LONG_POLL_TIMEOUT_MS="3000") as harness:
        feed = rest_services(harness).feed
        theirs = await harness.conversation(1, 2)
        await harness.conversation(1, 3)
        cursor, _ = await answer(start_poll(feed, 3, None))
        poll = start_poll(feed, 3, cursor)
        await until_parked(poll)
        last = await send(harness, 1, theirs, "not for 3")
        await until_parked(poll)

        await harness.advance(3)

        assert await answer(poll) == (last, [])


async def test_a_membership_added_behind_the_servers_back_is_seen_at_the_next_recheck(
    harness: ServiceHarness,
) -> None:
    feed = rest_services(harness).feed
    conversation = await harness.conversation(1)
    cursor, _ = await answer(start_poll(feed, 2, None))
    poll = start_poll(feed, 2, cursor)
    await until_parked(poll)
    # Added by the CLI or the portal's database: no member:added, no wake-up.
    await harness.storage.conversations.add_member(conversation, 2, harness.now_ms)
    welcome = await send(harness, 1, conversation, "welcome")
    await until_parked(poll)
    assert not poll.done()

    await harness.advance(RECHECK_S - 0.001)
    await until_parked(poll)
    assert not poll.done()
    await harness.advance(0.001)

    position, events = await answer(poll)
    assert (position, [e.message_id for e in events]) == (welcome, [welcome])


async def test_a_delivered_member_added_lets_that_conversation_wake_the_poll(
    harness: ServiceHarness,
) -> None:
    rest = rest_services(harness)
    conversation = await harness.conversation(1)
    cursor, _ = await answer(start_poll(rest.feed, 2, None))
    poll = start_poll(rest.feed, 2, cursor)
    await until_parked(poll)

    assert await rest.server.add_member(conversation, 2)
    cursor, events = await answer(poll)  # the clock never moves: woken
    assert [e.wire()["event"] for e in events] == ["conversation:added"]
    poll = start_poll(rest.feed, 2, cursor)
    await until_parked(poll)
    welcome = await send(harness, 1, conversation, "welcome")

    await until_parked(poll)
    assert poll.done()
    assert [e.wire()["data"]["id"] for e in poll.result()[1]] == [welcome]


async def test_closing_the_feed_answers_every_waiting_poll_at_once(
    harness: ServiceHarness,
) -> None:
    feed = rest_services(harness).feed
    conversation = await harness.conversation(1, 2)
    cursor = await send(harness, 1, conversation, "seen")
    polls = [start_poll(feed, 1, cursor), start_poll(feed, 2, cursor)]
    for poll in polls:
        await until_parked(poll)
    assert feed.waiting == 2

    feed.close()

    assert [await answer(poll) for poll in polls] == [(cursor, []), (cursor, [])]
    assert feed.waiting == 0


# -- the settled position: gaps in the log ----------------------------------------------


async def test_an_event_committed_into_a_gap_before_it_settles_is_returned_in_order(
    harness: ServiceHarness,
) -> None:
    feed = rest_services(harness).feed
    conversation = await harness.conversation(1, 2)
    await log_event(harness, 1, conversation, 2, harness.now_ms)
    cursor, _ = await answer(start_poll(feed, 1, None))
    assert cursor == 1
    await log_event(harness, 3, conversation, 2, harness.now_ms)  # id 2 is still open

    poll = start_poll(feed, 1, cursor)
    await until_parked(poll)
    assert not poll.done()  # 3 is not answered: 2 may still commit below it
    await log_event(harness, 2, conversation, 2, harness.now_ms)
    await harness.advance(RECHECK_S)

    position, events = await answer(poll)
    assert (position, [e.id for e in events]) == (3, [2, 3])


async def test_a_gap_that_never_fills_is_passed_over_once_older_than_db_timeout_and_margin(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(DB_TIMEOUT_MS="1000") as harness:
        settle_s = (1000 + SETTLE_MARGIN_MS) / 1000
        feed = rest_services(harness).feed
        conversation = await harness.conversation(1, 2)
        await log_event(harness, 1, conversation, 2, harness.now_ms)
        cursor, _ = await answer(start_poll(feed, 1, None))
        await log_event(harness, 3, conversation, 2, harness.now_ms)  # 2 was rolled back

        poll = start_poll(feed, 1, cursor)
        await until_parked(poll)
        await harness.advance(settle_s - 0.001)
        feed.conversation_changed(conversation)  # a re-read just before it settles
        await until_parked(poll)
        assert not poll.done()
        await harness.advance(0.001)  # the recheck at settle_s
        await until_parked(poll)

        assert poll.done()
        position, events = poll.result()
        assert (position, [e.id for e in events]) == (3, [3])


async def test_a_new_feed_passes_over_a_gap_below_events_older_than_the_settle_time(
    harness: ServiceHarness,
) -> None:
    feed = rest_services(harness).feed
    conversation = await harness.conversation(1, 2)
    old_ms = harness.now_ms - (harness.settings.db_timeout_ms + SETTLE_MARGIN_MS)
    await log_event(harness, 1, conversation, 2, old_ms)
    await log_event(harness, 3, conversation, 2, old_ms)  # 2 never committed

    assert await answer(start_poll(feed, 1, None)) == (3, [])


async def test_a_new_feed_stops_below_a_gap_younger_than_the_settle_time(
    harness: ServiceHarness,
) -> None:
    feed = rest_services(harness).feed
    conversation = await harness.conversation(1, 2)
    settle_ms = harness.settings.db_timeout_ms + SETTLE_MARGIN_MS
    await log_event(harness, 1, conversation, 2, harness.now_ms - settle_ms)
    await log_event(harness, 3, conversation, 2, harness.now_ms - settle_ms + 1)

    assert await answer(start_poll(feed, 1, None)) == (1, [])


async def test_polls_past_max_polls_per_user_are_refused_and_places_are_given_back(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MAX_POLLS_PER_USER="2") as harness:
        feed = rest_services(harness).feed
        await harness.conversation(1, 2)
        held = [start_poll(feed, 1, 0), start_poll(feed, 1, 0)]
        for poll in held:
            await until_parked(poll)

        with pytest.raises(ChatError) as refused:
            await answer(start_poll(feed, 1, 0))
        assert refused.value.code == ErrorCode.RATE_LIMITED
        other = start_poll(feed, 2, 0)  # the cap is per user
        await until_parked(other)
        assert feed.waiting == 3

        with pytest.raises(ChatError):  # a refused cursor gives its place back too
            await answer(start_poll(feed, 2, 10**6))
        await harness.advance(harness.settings.long_poll_timeout_ms / 1000)
        for poll in [*held, other]:
            assert await answer(poll) == (0, [])
        again = start_poll(feed, 1, 0)
        await until_parked(again)
        assert feed.waiting == 1
        await harness.advance(harness.settings.long_poll_timeout_ms / 1000)
        assert await answer(again) == (0, [])


# -- what the fan-out must bring this node ------------------------------------------------


async def test_a_waiting_poll_watches_its_users_and_conversations_rooms_until_answered(
    harness: ServiceHarness,
) -> None:
    """With per-room fan-out a node reads a room's channel only while someone here
    needs it: a held poll does (Fanout.watch), and lets go once answered."""
    watched: list[str] = []

    def watch(rooms: Iterable[str]) -> Callable[[], None]:
        held = list(rooms)
        watched.extend(held)

        def release() -> None:
            for room in held:
                watched.remove(room)
        return release

    feed = EventFeed(conversations=harness.chat.storage.conversations,
                     events=harness.chat.storage.events, clock=harness.clock, hold_s=25.0,
                     db_timeout_ms=harness.settings.db_timeout_ms, watch=watch)
    mine = await harness.conversation(1, 2)
    also_mine = await harness.conversation(1, 3)
    await harness.conversation(2, 3)  # not user 1's
    last = await send(harness, 2, mine, "seen")

    poll = start_poll(feed, 1, last)
    await until_parked(poll)
    assert sorted(watched) == sorted(
        [user_room(1), conversation_room(mine), conversation_room(also_mine)])
    new = await send(harness, 2, mine, "next")
    harness.clock.advance(RECHECK_S)  # this feed hears no delivery: its recheck reads it

    assert (await answer(poll))[0] == new
    assert watched == []
