"""InboxService: what the REST API reads and creates beyond the socket's events:
a user's conversations (most recently active first, with members, unread counts
and the last message), new conversations of their creator and members, and pages
of a conversation's messages for its members."""

from __future__ import annotations

import pytest

from ecigdis_ws.domain import ConversationSummary, StoredMessage, iso_ms
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.inbox import InboxService
from tests.services.conftest import ServiceHarness
from tests.services.feed_support import rest_actor, rest_services
from tests.services.feed_support import send_message as send


def inbox_of(harness: ServiceHarness) -> InboxService:
    return rest_services(harness).inbox


async def page_of(
    inbox: InboxService, user: int, conversation: int, since: int | None, before: int | None,
    limit: int,
) -> tuple[list[StoredMessage], bool]:
    """The messages of a page and whether more lie beyond it."""
    page = await inbox.messages(user, conversation, since, before, limit)
    return page.messages, page.has_more


# -- the conversation list --------------------------------------------------------------


async def test_a_conversation_is_listed_with_its_members_and_messages_from_others_unread(
    harness: ServiceHarness,
) -> None:
    inbox = inbox_of(harness)
    conversation = await harness.conversation(1, 2, title="pair")
    await send(harness, 2, conversation, "one")
    await send(harness, 2, conversation, "two")
    last = await send(harness, 1, conversation, "mine")  # not unread to its sender

    assert await inbox.conversations(1) == [ConversationSummary(
        id=conversation, title="pair", created_at_ms=harness.now_ms, members=(1, 2),
        unread_count=2, last_read_message_id=None, last_message=last,
    )]
    [for_bob] = await inbox.conversations(2)
    assert for_bob.unread_count == 1


async def test_reading_up_to_a_message_leaves_only_later_ones_unread(
    harness: ServiceHarness,
) -> None:
    inbox = inbox_of(harness)
    conversation = await harness.conversation(1, 2)
    first = await send(harness, 2, conversation, "one")
    await send(harness, 2, conversation, "two")
    await send(harness, 2, conversation, "three")

    await harness.chat.receipts.mark_read(rest_actor(1), conversation, first.id)

    [summary] = await inbox.conversations(1)
    assert (summary.unread_count, summary.last_read_message_id) == (2, first.id)


async def test_conversations_are_listed_most_recently_active_first(
    harness: ServiceHarness,
) -> None:
    inbox = inbox_of(harness)
    quiet = await harness.conversation(1, 2, title="quiet")
    older = await harness.conversation(1, 2, title="older")
    newer = await harness.conversation(1, 3, title="newer")
    silent = await harness.conversation(1, 4, title="silent")
    await send(harness, 2, older, "first")
    await send(harness, 3, newer, "second")

    listed = [c.id for c in await inbox.conversations(1)]

    # with no message at all: newest conversation first, after every active one
    assert listed == [newer, older, silent, quiet]


async def test_only_the_users_own_conversations_are_listed(harness: ServiceHarness) -> None:
    inbox = inbox_of(harness)
    mine = await harness.conversation(1, 2)
    await harness.conversation(2, 3)

    assert [c.id for c in await inbox.conversations(1)] == [mine]
    assert await inbox.conversations(4) == []


# -- creating ---------------------------------------------------------------------------


async def test_a_created_conversation_has_its_creator_and_each_member_once(
    harness: ServiceHarness,
) -> None:
    inbox = inbox_of(harness)
    await harness.advance(12.5)

    created = await inbox.create(1, "Ops", [3, 2, 3, 1])

    assert created == ConversationSummary(
        id=created.id, title="Ops", created_at_ms=harness.now_ms, members=(1, 2, 3),
        unread_count=0, last_read_message_id=None, last_message=None,
    )
    assert await harness.storage.conversations.member_ids(created.id) == [1, 2, 3]


async def test_a_created_conversation_is_what_the_list_then_shows(
    harness: ServiceHarness,
) -> None:
    inbox = inbox_of(harness)

    # members in the listing's order: user ids compared as text, so 10 before 2
    created = await inbox.create(1, "", [9, 10, 2])

    assert created.members == (1, 10, 2, 9)
    for user in (1, 2, 9, 10):
        assert await inbox.conversations(user) == [created]


async def test_the_creator_may_use_a_created_conversation_at_once(
    harness: ServiceHarness,
) -> None:
    inbox = inbox_of(harness)
    created = await inbox.create(1, "new", [2])

    message = await send(harness, 1, created.id, "first")

    assert await page_of(inbox, 2, created.id, None, None, 10) == ([message], False)


async def test_every_members_sockets_hear_conversation_added_from_the_creator(
    harness: ServiceHarness,
) -> None:
    inbox = inbox_of(harness)
    alice, bob, bob_again = await harness.user(1), await harness.user(2), await harness.user(2)
    carol, anonymous = await harness.user(3), await harness.socket()

    created = await inbox.create(1, "Ops", [2])

    told = {"conversationId": created.id, "title": "Ops", "members": [1, 2], "addedBy": 1}
    for sid in (alice, bob, bob_again):  # the creator's own sockets too: other tabs
        assert harness.received(sid, "conversation:added") == [told]
    for sid in (carol, anonymous):
        assert harness.received(sid, "conversation:added") == []


# -- pages of messages ------------------------------------------------------------------


async def test_a_page_without_since_is_the_newest_messages_with_more_before_it(
    harness: ServiceHarness,
) -> None:
    inbox = inbox_of(harness)
    conversation = await harness.conversation(1, 2)
    ids = [(await send(harness, 2, conversation, f"m{n}")).id for n in range(5)]

    newest, more = await page_of(inbox, 1, conversation, None, None, 2)
    assert ([m.id for m in newest], more) == (ids[3:], True)
    older, more = await page_of(inbox, 1, conversation, None, ids[3], 2)
    assert ([m.id for m in older], more) == (ids[1:3], True)
    oldest, more = await page_of(inbox, 1, conversation, None, ids[1], 2)
    assert ([m.id for m in oldest], more) == (ids[:1], False)


async def test_a_page_before_a_message_with_exactly_the_limit_left_has_no_more(
    harness: ServiceHarness,
) -> None:
    inbox = inbox_of(harness)
    conversation = await harness.conversation(1, 2)
    ids = [(await send(harness, 2, conversation, f"m{n}")).id for n in range(4)]

    page, more = await page_of(inbox, 1, conversation, None, ids[3], 3)

    assert ([m.id for m in page], more) == (ids[:3], False)


async def test_a_page_since_a_message_is_the_oldest_after_it_with_more_after_it(
    harness: ServiceHarness,
) -> None:
    inbox = inbox_of(harness)
    conversation = await harness.conversation(1, 2)
    ids = [(await send(harness, 2, conversation, f"m{n}")).id for n in range(5)]

    first, more = await page_of(inbox, 1, conversation, ids[0], None, 2)
    assert ([m.id for m in first], more) == (ids[1:3], True)
    last, more = await page_of(inbox, 1, conversation, ids[2], None, 2)
    assert ([m.id for m in last], more) == (ids[3:], False)


async def test_a_page_since_and_before_stays_between_them(harness: ServiceHarness) -> None:
    inbox = inbox_of(harness)
    conversation = await harness.conversation(1, 2)
    ids = [(await send(harness, 2, conversation, f"m{n}")).id for n in range(6)]

    page, more = await page_of(inbox, 1, conversation, ids[0], ids[4], 2)
    assert ([m.id for m in page], more) == (ids[1:3], True)
    page, more = await page_of(inbox, 1, conversation, ids[0], ids[4], 3)
    assert ([m.id for m in page], more) == (ids[1:4], False)


async def test_pages_are_for_members_only(harness: ServiceHarness) -> None:
    inbox = inbox_of(harness)
    conversation = await harness.conversation(1, 2)
    await send(harness, 2, conversation, "private")

    with pytest.raises(ChatError) as refused:
        await inbox.messages(3, conversation, None, None, 10)

    assert refused.value.code == ErrorCode.FORBIDDEN


async def test_an_empty_conversation_is_an_empty_page(harness: ServiceHarness) -> None:
    inbox = inbox_of(harness)
    conversation = await harness.conversation(1)

    assert await page_of(inbox, 1, conversation, None, None, 10) == ([], False)
    assert await page_of(inbox, 1, conversation, 0, None, 10) == ([], False)


# -- the state that comes with a page ---------------------------------------------------


async def test_a_page_carries_each_messages_reactions_and_the_members_read_positions(
    harness: ServiceHarness,
) -> None:
    inbox = inbox_of(harness)
    conversation = await harness.conversation(1, 2, 3)
    first = await send(harness, 1, conversation, "first")
    second = await send(harness, 1, conversation, "second")
    read_at = harness.now_ms
    await harness.chat.receipts.mark_read(rest_actor(2), conversation, second.id)
    await harness.advance(1)
    await harness.chat.reactions.toggle(rest_actor(3), conversation, first.id, "👍")
    await harness.advance(1)
    await harness.chat.reactions.toggle(rest_actor(2), conversation, first.id, "🎉")
    await harness.advance(1)
    await harness.chat.reactions.toggle(rest_actor(2), conversation, first.id, "👍")

    page = await inbox.messages(1, conversation, None, None, 10)

    body = page.wire()
    assert [m["reactions"] for m in body["messages"]] == [
        [{"emoji": "👍", "count": 2, "userIds": [3, 2]},
         {"emoji": "🎉", "count": 1, "userIds": [2]}],
        [],
    ]
    assert body["reads"] == [
        {"userId": 2, "messageId": second.id, "readAt": iso_ms(read_at)},
    ]
    assert body["hasMore"] is False
