"""ConversationService: a socket joins a conversation's room (members only), is
sent the messages after `since` (in pages, and again for anything stored while it
entered, so nothing is skipped; at most REPLAY_MAX_MESSAGES, beyond which the answer
says resync and where it stopped; nothing more once the socket is gone), and learns
who of the members is online; the room
hears user:joined the first time a socket enters it and user:left when it leaves.
Leaving a room the socket is not in does nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from ecigdis_ws.domain import OnlineUser, iso_ms
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.fanout.base import conversation_room
from ecigdis_ws.services.conversations import REPLAY_PAGE_SIZE
from tests.services.conftest import ServiceHarness

HarnessFactory = Callable[..., AbstractAsyncContextManager[ServiceHarness]]


async def join(
    harness: ServiceHarness, sid: str, conversation: int, since: int | None = None
) -> list[int | str]:
    joined = await harness.chat.conversations.join(harness.actor(sid), conversation, since)
    return joined.online_user_ids


async def store(
    harness: ServiceHarness, conversation: int, *texts: str, sender: int = 1
) -> list[int]:
    """Messages stored straight in the database (as if sent while nobody listened)."""
    ids = []
    for text in texts:
        result = await harness.storage.messages.store_message(
            conversation, sender, f"user{sender}", f"c-{text}", text, harness.now_ms
        )
        ids.append(result.message.id)
    return ids


async def store_many(
    harness: ServiceHarness, conversation: int, count: int, tag: str = "c"
) -> list[int]:
    """`count` messages of user 2, stored concurrently (so that group commit writes
    them in a few transactions); their ids, ascending."""
    results = await asyncio.gather(*(
        harness.storage.messages.store_message(
            conversation, 2, "user2", f"{tag}{i}", "t", harness.now_ms
        )
        for i in range(count)
    ))
    return sorted(result.message.id for result in results)


def in_room(harness: ServiceHarness, sid: str, conversation: int) -> bool:
    return harness.chat.fanout.in_room(sid, conversation_room(conversation))


async def test_join_puts_the_socket_in_the_conversations_room(harness: ServiceHarness) -> None:
    alice = await harness.user(1)
    conversation = await harness.conversation(1)

    await join(harness, alice, conversation)

    assert in_room(harness, alice, conversation)


async def test_the_first_join_announces_user_joined_to_the_room_except_the_joiner(
    harness: ServiceHarness,
) -> None:
    alice, bob, carol = await harness.user(1), await harness.user(2), await harness.user(3)
    conversation = await harness.conversation(1, 2, 3)
    await join(harness, bob, conversation)  # carol is a member but not in the room

    await join(harness, alice, conversation)

    assert harness.received(bob, "user:joined") == [{"userId": 1, "conversationId": conversation}]
    assert harness.received(alice, "user:joined") == []
    assert harness.received(carol, "user:joined") == []


async def test_joining_again_from_the_same_socket_announces_nothing(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await join(harness, bob, conversation)
    await join(harness, alice, conversation)

    await join(harness, alice, conversation)

    assert harness.received(bob, "user:joined") == [{"userId": 1, "conversationId": conversation}]
    assert in_room(harness, alice, conversation)


async def test_another_socket_of_the_same_user_entering_the_room_is_announced(
    harness: ServiceHarness,
) -> None:
    # "the first time a socket enters a room" (docs/protocol.md): per socket, not per user.
    alice, alice_tab, bob = await harness.user(1), await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await join(harness, bob, conversation)
    await join(harness, alice, conversation)

    await join(harness, alice_tab, conversation)

    assert harness.received(bob, "user:joined") == [
        {"userId": 1, "conversationId": conversation},
        {"userId": 1, "conversationId": conversation},
    ]


async def test_join_returns_the_members_online_including_the_joiner(
    harness: ServiceHarness,
) -> None:
    alice = await harness.user(1)
    await harness.user(2)
    await harness.user(4)  # online, but not a member
    conversation = await harness.conversation(1, 2, 3)  # user 3 is offline

    online = await join(harness, alice, conversation)

    assert online == [1, 2]


async def test_join_without_since_replays_nothing(harness: ServiceHarness) -> None:
    alice = await harness.user(1)
    conversation = await harness.conversation(1, 2)
    await store(harness, conversation, "old", sender=2)

    await join(harness, alice, conversation)

    assert harness.received(alice, "message:new") == []


async def test_join_with_since_replays_exactly_the_messages_after_it_in_order(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation, other = await harness.conversation(1, 2), await harness.conversation(1, 2)
    await join(harness, bob, conversation)
    seen, *missed = await store(harness, conversation, "seen", "missed-1", "missed-2", sender=2)
    await store(harness, other, "elsewhere", sender=2)
    missed.extend(await store(harness, conversation, "missed-3", sender=2))

    await join(harness, alice, conversation, since=seen)

    replayed = harness.received(alice, "message:new")
    assert [m["id"] for m in replayed] == missed
    assert [m["text"] for m in replayed] == ["missed-1", "missed-2", "missed-3"]
    assert harness.received(bob, "message:new") == []  # the replay is for the joiner only


async def test_a_replayed_message_has_the_stored_wire_shape_with_the_client_id_as_text(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2, "Bob")
    conversation = await harness.conversation(1, 2)
    sent = await harness.chat.messages.send(
        harness.actor(bob), conversation, "hello", 42
    )

    await join(harness, alice, conversation, since=0)

    assert harness.received(alice, "message:new") == [{
        "id": sent.message.id,
        "messageId": "42",
        "conversationId": conversation,
        "userId": 2,
        "senderName": "Bob",
        "text": "hello",
        "createdAt": "2027-01-15T08:00:00.000Z",
        "reactions": [],  # history carries its state (none here)
    }]


async def test_join_with_since_zero_replays_the_whole_conversation(
    harness: ServiceHarness,
) -> None:
    alice = await harness.user(1)
    conversation = await harness.conversation(1, 2)
    ids = await store(harness, conversation, "a", "b", "c", sender=2)

    await join(harness, alice, conversation, since=0)

    assert [m["id"] for m in harness.received(alice, "message:new")] == ids


async def test_join_with_since_at_the_latest_message_replays_nothing(
    harness: ServiceHarness,
) -> None:
    alice = await harness.user(1)
    conversation = await harness.conversation(1, 2)
    *_, last = await store(harness, conversation, "a", "b", sender=2)

    await join(harness, alice, conversation, since=last)

    assert harness.received(alice, "message:new") == []


async def test_joining_again_with_since_replays_again(harness: ServiceHarness) -> None:
    alice = await harness.user(1)
    conversation = await harness.conversation(1, 2)
    first, second = await store(harness, conversation, "a", "b", sender=2)
    await join(harness, alice, conversation, since=first)

    await join(harness, alice, conversation, since=first)

    assert [m["id"] for m in harness.received(alice, "message:new")] == [second, second]


@pytest.mark.parametrize(
    "count", [REPLAY_PAGE_SIZE, REPLAY_PAGE_SIZE + 1, 2 * REPLAY_PAGE_SIZE + 3]
)
async def test_a_replay_longer_than_a_page_sends_every_message_once_in_order(
    harness: ServiceHarness, count: int,
) -> None:
    alice = await harness.user(1)
    conversation = await harness.conversation(1, 2)
    ids = await store_many(harness, conversation, count)

    await join(harness, alice, conversation, since=0)

    assert [m["id"] for m in harness.received(alice, "message:new")] == ids


async def test_a_non_member_cannot_join_and_nothing_is_announced_or_replayed(
    harness: ServiceHarness,
) -> None:
    alice, mallory = await harness.user(1), await harness.user(9)
    conversation = await harness.conversation(1)
    await join(harness, alice, conversation)
    await store(harness, conversation, "secret")

    with pytest.raises(ChatError) as refused:
        await join(harness, mallory, conversation, since=0)

    assert refused.value.code == ErrorCode.FORBIDDEN
    assert not in_room(harness, mallory, conversation)
    assert harness.received(mallory, "message:new") == []
    assert harness.received(alice, "user:joined") == []


async def test_an_unknown_conversation_is_forbidden_and_not_created(
    harness: ServiceHarness,
) -> None:
    alice = await harness.user(1)

    with pytest.raises(ChatError) as refused:
        await join(harness, alice, 4242)

    assert refused.value.code == ErrorCode.FORBIDDEN
    assert not await harness.storage.conversations.conversation_exists(4242)


async def test_with_open_access_joining_makes_the_user_a_member(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(CONVERSATION_ACCESS="open") as harness:
        alice, bob = await harness.user(1), await harness.user(2)
        conversation = await harness.conversation(1)
        await join(harness, alice, conversation)

        online = await join(harness, bob, conversation)

        assert online == [1, 2]
        assert await harness.storage.conversations.member_ids(conversation) == [1, 2]
        assert harness.received(alice, "user:joined") == [
            {"userId": 2, "conversationId": conversation}
        ]


async def test_leave_announces_user_left_to_the_room_and_takes_the_socket_out(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await join(harness, alice, conversation)
    await join(harness, bob, conversation)

    await harness.chat.conversations.leave(harness.actor(alice), conversation)

    assert harness.received(bob, "user:left") == [{"userId": 1, "conversationId": conversation}]
    assert harness.received(alice, "user:left") == []
    assert not in_room(harness, alice, conversation)
    await harness.chat.messages.send(harness.actor(bob), conversation, "x", "m")
    assert harness.received(alice, "message:new") == []


async def test_leaving_a_room_the_socket_is_not_in_does_nothing(harness: ServiceHarness) -> None:
    alice, alice_tab, bob = await harness.user(1), await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await join(harness, alice, conversation)
    await join(harness, bob, conversation)

    await harness.chat.conversations.leave(harness.actor(alice_tab), conversation)

    assert harness.received(bob, "user:left") == []
    assert in_room(harness, alice, conversation)  # the user's other socket stays


async def test_leaving_twice_announces_user_left_once(harness: ServiceHarness) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await join(harness, alice, conversation)
    await join(harness, bob, conversation)

    for _ in range(2):
        await harness.chat.conversations.leave(harness.actor(alice), conversation)

    assert harness.received(bob, "user:left") == [{"userId": 1, "conversationId": conversation}]


async def test_rejoining_after_leaving_announces_user_joined_again(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await join(harness, bob, conversation)
    await join(harness, alice, conversation)
    await harness.chat.conversations.leave(harness.actor(alice), conversation)

    await join(harness, alice, conversation)

    assert harness.received(bob, "user:joined") == [
        {"userId": 1, "conversationId": conversation},
        {"userId": 1, "conversationId": conversation},
    ]


async def test_online_members_without_a_conversation_lists_everyone_online(
    harness: ServiceHarness,
) -> None:
    alice = await harness.user(1, "Alice")
    await harness.user(2, "Bob")
    await harness.user(9, "Mallory")

    online = await harness.chat.conversations.online_members(
        harness.actor(alice), None
    )

    assert sorted(online, key=lambda user: str(user.user_id)) == [
        OnlineUser(1, "Alice"), OnlineUser(2, "Bob"), OnlineUser(9, "Mallory"),
    ]


async def test_online_members_of_a_conversation_lists_only_its_members_online(
    harness: ServiceHarness,
) -> None:
    alice = await harness.user(1, "Alice")
    await harness.user(2, "Bob")
    await harness.user(9, "Mallory")
    conversation = await harness.conversation(1, 2, 3)

    online = await harness.chat.conversations.online_members(
        harness.actor(alice), conversation
    )

    assert online == [OnlineUser(1, "Alice"), OnlineUser(2, "Bob")]


async def test_online_members_of_a_conversation_the_user_is_not_in_is_forbidden(
    harness: ServiceHarness,
) -> None:
    await harness.user(1)
    mallory = await harness.user(9)
    conversation = await harness.conversation(1)

    with pytest.raises(ChatError) as refused:
        await harness.chat.conversations.online_members(
            harness.actor(mallory), conversation
        )

    assert refused.value.code == ErrorCode.FORBIDDEN


async def test_the_presence_list_is_cut_at_presence_list_max_and_says_so(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(PRESENCE_LIST_MAX="2") as harness:
        alice = await harness.user(1, "Alice")
        actor = harness.actor(alice)
        await harness.user(2, "Bob")
        assert not (await harness.chat.conversations.presence_list(actor, None)).truncated

        await harness.user(3, "Cy")
        listing = await harness.chat.conversations.presence_list(actor, None)

        assert len(listing.users) == 2 and listing.truncated
        assert listing.wire()["count"] == 2 and listing.wire()["truncated"] is True


async def test_a_socket_in_max_rooms_per_socket_rooms_is_refused_a_new_one(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(CONVERSATION_ACCESS="open", MAX_ROOMS_PER_SOCKET="2") as harness:
        mallory = await harness.user(9)
        await harness.join(1, mallory)
        await harness.join(2, mallory)

        with pytest.raises(ChatError) as refused:
            await harness.join(3, mallory)

        assert refused.value.code == ErrorCode.RATE_LIMITED
        assert not in_room(harness, mallory, 3)
        assert await harness.storage.conversations.conversation_ids_of(
            9
        ) == {1, 2}  # no member made
        await harness.join(2, mallory)  # a room it is in: fine
        await harness.chat.conversations.leave(harness.actor(mallory), 1)
        await harness.join(3, mallory)
        assert in_room(harness, mallory, 3)


# -- the state a join brings: reactions on replayed messages, read positions -----------


async def test_a_replay_carries_each_messages_reactions_and_the_join_the_read_positions(
    harness: ServiceHarness,
) -> None:
    alice, bob, carol = await harness.user(1), await harness.user(2), await harness.user(3)
    conversation = await harness.conversation(1, 2, 3)
    first, second = await store(harness, conversation, "first", "second", sender=1)
    await harness.chat.reactions.toggle(harness.actor(carol), conversation, first, "👍")
    await harness.advance(1)
    await harness.chat.reactions.toggle(harness.actor(bob), conversation, first, "👍")
    read_at = harness.now_ms
    await harness.chat.receipts.mark_read(harness.actor(bob), conversation, second)

    joined = await harness.chat.conversations.join(harness.actor(alice), conversation, 0)

    replayed = harness.received(alice, "message:new")
    assert [(m["id"], m["reactions"]) for m in replayed] == [
        (first, [{"emoji": "👍", "count": 2, "userIds": [3, 2]}]),
        (second, []),
    ]
    assert joined.wire(conversation)["reads"] == [
        {"userId": 2, "messageId": second, "readAt": iso_ms(read_at)},
    ]
    assert [position.user_id for position in joined.reads] == [1, 2, 3]  # every member


# -- bounded replays: REPLAY_MAX_MESSAGES, and a socket gone mid-join (issue 25, 4) ----


@pytest.mark.parametrize("cap", [5, REPLAY_PAGE_SIZE + 3])
async def test_a_replay_stops_at_replay_max_messages_and_the_answer_says_where(
    make_harness: HarnessFactory, cap: int,
) -> None:
    async with make_harness(REPLAY_MAX_MESSAGES=str(cap)) as harness:
        alice = await harness.user(1)
        conversation = await harness.conversation(1, 2)
        ids = await store_many(harness, conversation, 2 * cap)

        joined = await harness.chat.conversations.join(harness.actor(alice), conversation, ids[0])

        assert [m["id"] for m in harness.received(alice, "message:new")] == ids[1:cap + 1]
        answer = joined.wire(conversation)
        assert (answer["resync"], answer["replayedUpTo"]) == (True, ids[cap])
        assert in_room(harness, alice, conversation)  # live from here; history for the rest


async def test_a_replay_of_exactly_replay_max_messages_is_whole_and_asks_no_resync(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(REPLAY_MAX_MESSAGES="3") as harness:
        alice = await harness.user(1)
        conversation = await harness.conversation(1, 2)
        ids = await store_many(harness, conversation, 3)

        joined = await harness.chat.conversations.join(harness.actor(alice), conversation, 0)

        assert [m["id"] for m in harness.received(alice, "message:new")] == ids
        assert "resync" not in joined.wire(conversation)
        assert "replayedUpTo" not in joined.wire(conversation)


async def test_messages_stored_while_the_socket_enters_the_room_count_towards_the_cap(
    make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with make_harness(REPLAY_MAX_MESSAGES="3") as harness:
        alice = await harness.user(1)
        conversation = await harness.conversation(1, 2)
        ids = await store_many(harness, conversation, 2)
        entered, meanwhile = harness.chat.fanout.entered, []

        async def entering(room: str) -> None:
            meanwhile.extend(await store_many(harness, conversation, 2, tag="late"))
            await entered(room)

        monkeypatch.setattr(harness.chat.fanout, "entered", entering)
        joined = await harness.chat.conversations.join(harness.actor(alice), conversation, 0)

        assert [m["id"] for m in harness.received(alice, "message:new")] == [*ids, meanwhile[0]]
        assert joined.wire(conversation)["replayedUpTo"] == meanwhile[0]


async def test_a_replay_stops_once_the_socket_is_gone_and_it_never_enters_the_room(
    harness: ServiceHarness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, bob)
    await store_many(harness, conversation, 3 * REPLAY_PAGE_SIZE)
    actor, read, pages = harness.actor(alice), harness.storage.messages.messages_after, []

    async def read_then_leave(conversation_id: int, after_id: int, limit: int) -> object:
        pages.append(await read(conversation_id, after_id, limit))
        if len(pages) == 1:
            await harness.close(alice)  # the socket went away while its first page was read
        return pages[-1]

    monkeypatch.setattr(harness.storage.messages, "messages_after", read_then_leave)
    with pytest.raises(ChatError) as gone:
        await harness.chat.conversations.join(actor, conversation, 0)

    assert gone.value.code == ErrorCode.UNAVAILABLE  # (before: KeyError in basic_enter_room)
    assert len(pages) == 1  # no page read after the socket left
    assert not in_room(harness, alice, conversation)
    assert harness.received(bob, "user:joined") == []


# -- conversation:update --------------------------------------------------------------


async def test_a_member_renames_and_the_others_in_the_room_hear_it_once(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)

    changed = await harness.chat.conversations.rename(harness.actor(alice), conversation, "Til")
    again = await harness.chat.conversations.rename(harness.actor(alice), conversation, "Til")

    assert (changed, again) == (True, False)
    assert harness.received(bob, "conversation:updated") == [
        {"conversationId": conversation, "title": "Til", "updatedBy": 1}
    ]
    assert harness.received(alice, "conversation:updated") == []
    assert await harness.storage.conversations.conversation_title(conversation) == "Til"


async def test_a_non_member_cannot_rename(harness: ServiceHarness) -> None:
    mallory = await harness.user(9)
    conversation = await harness.conversation(1, 2)

    with pytest.raises(ChatError) as refused:
        await harness.chat.conversations.rename(harness.actor(mallory), conversation, "mine")

    assert refused.value.code == ErrorCode.FORBIDDEN
    assert await harness.storage.conversations.conversation_title(conversation) == "test"
