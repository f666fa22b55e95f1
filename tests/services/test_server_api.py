"""ServerApiService: what the main site does through /api/server/* (post a
message into any existing conversation, as the system user or a named one; add
and remove members), and how every node applies a delivered membership change:
member:removed takes the user's sockets out of the room right after they heard
it, ends their typing there and forgets the cached membership."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from ecigdis_ws.domain import ChangedBy, UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.fanout.base import conversation_room, user_room
from ecigdis_ws.transport.socketio_overrides.managers import NAMESPACE
from tests.services.conftest import ServiceHarness
from tests.services.feed_support import answer, rest_services, start_poll, until_parked

HarnessFactory = Callable[..., AbstractAsyncContextManager[ServiceHarness]]


async def in_room(harness: ServiceHarness, user: UserId, conversation: int) -> str:
    """A socket of `user` that has joined the conversation's room."""
    sid = await harness.user(user)
    await harness.join(conversation, sid)
    return sid


async def settled(harness: ServiceHarness) -> None:
    """Let what a delivery scheduled run: the room change `call_soon`'d right after
    member:removed went out, and the background work it spawned."""
    await asyncio.sleep(0)
    await harness.chat.tasks.drain()


async def deliver_from_another_node(
    harness: ServiceHarness, event: str, data: Any, room: Any
) -> None:
    """Deliver an emit made on another node, as the Redis manager does on receiving it."""
    await harness.manager.emit(event, data, NAMESPACE, room=room)


# -- posting ----------------------------------------------------------------------------


async def test_a_message_without_a_user_is_posted_as_the_system_user_to_the_whole_room(
    harness: ServiceHarness,
) -> None:
    server = rest_services(harness).server
    conversation = await harness.conversation(1, 2)
    alice, bob = await in_room(harness, 1, conversation), await in_room(harness, 2, conversation)

    result = await server.post_message(conversation, "notice-7", "Shop closes at 5", None, None)

    assert not result.duplicate
    assert (result.message.user_id, result.message.sender_name) == (0, "System")
    for sid in (alice, bob):
        assert harness.received(sid, "message:new") == [result.message.wire("notice-7")]
    assert await harness.storage.messages.messages_page(
        conversation, None, None, 10
    ) == [result.message]


async def test_with_string_user_ids_the_system_user_is_called_system(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(USER_ID_TYPE="string") as harness:
        server = rest_services(harness).server
        conversation = await harness.conversation("alice")

        result = await server.post_message(conversation, "n1", "hello", None, None)

        assert (result.message.user_id, result.message.sender_name) == ("system", "System")


async def test_a_message_may_name_its_sender_and_the_senders_name(
    harness: ServiceHarness,
) -> None:
    server = rest_services(harness).server
    conversation = await harness.conversation(1)
    alice = await in_room(harness, 1, conversation)

    result = await server.post_message(conversation, 3, "Approved", 42, "HR bot")

    [new] = harness.received(alice, "message:new")
    assert (new["userId"], new["senderName"], new["messageId"]) == (42, "HR bot", 3)
    assert result.message.client_message_id == "3"


async def test_a_message_of_a_named_user_without_a_name_is_signed_with_the_user_id(
    harness: ServiceHarness,
) -> None:
    server = rest_services(harness).server
    conversation = await harness.conversation(1)

    result = await server.post_message(conversation, "x1", "hi", 42, None)

    assert (result.message.user_id, result.message.sender_name) == (42, "42")


async def test_the_sender_need_not_be_a_member_and_is_not_made_one(
    harness: ServiceHarness,
) -> None:
    server = rest_services(harness).server
    conversation = await harness.conversation(1)

    await server.post_message(conversation, "x1", "from outside", 42, None)

    assert await harness.storage.conversations.member_ids(conversation) == [1]


async def test_posting_into_a_conversation_that_does_not_exist_is_not_found(
    harness: ServiceHarness,
) -> None:
    server = rest_services(harness).server

    with pytest.raises(ChatError) as refused:
        await server.post_message(999, "x1", "lost", None, None)

    assert (refused.value.code, refused.value.message) == (
        ErrorCode.NOT_FOUND, "no such conversation")
    assert await harness.storage.events.event_log_last_id() == 0  # nothing stored


async def test_the_same_message_id_posted_twice_is_stored_and_announced_once(
    harness: ServiceHarness,
) -> None:
    server = rest_services(harness).server
    conversation = await harness.conversation(1)
    alice = await in_room(harness, 1, conversation)

    first = await server.post_message(conversation, "notice-1", "once", None, None)
    again = await server.post_message(conversation, "notice-1", "once", None, None)

    assert (again.duplicate, again.message) == (True, first.message)
    assert len(harness.received(alice, "message:new")) == 1


async def test_a_posted_message_wakes_a_waiting_poll(harness: ServiceHarness) -> None:
    rest = rest_services(harness)
    conversation = await harness.conversation(1)
    cursor, _ = await answer(start_poll(rest.feed, 1, None))
    poll = start_poll(rest.feed, 1, cursor)
    await until_parked(poll)

    posted = await rest.server.post_message(conversation, "p1", "poll me", None, None)

    await until_parked(poll)
    assert poll.done()
    assert [e.message for e in poll.result()[1]] == [posted.message]


# -- adding members ---------------------------------------------------------------------


async def test_adding_a_member_tells_the_room_and_is_a_change_only_once(
    harness: ServiceHarness,
) -> None:
    server = rest_services(harness).server
    conversation = await harness.conversation(1)
    alice = await in_room(harness, 1, conversation)

    assert await server.add_member(conversation, 2) is True
    assert await server.add_member(conversation, 2) is False

    assert harness.received(alice, "member:added") == [
        {"userId": 2, "conversationId": conversation, "addedBy": None}]
    assert await harness.storage.conversations.member_ids(conversation) == [1, 2]


async def test_an_added_member_may_join_the_room_at_once(harness: ServiceHarness) -> None:
    server = rest_services(harness).server
    conversation = await harness.conversation(1)
    bob = await harness.user(2)
    actor = harness.actor(bob)
    with pytest.raises(ChatError) as refused:
        await harness.chat.conversations.join(actor, conversation, None)
    assert refused.value.code == ErrorCode.FORBIDDEN

    await server.add_member(conversation, 2)

    joined = await harness.chat.conversations.join(actor, conversation, None)
    assert joined.online_user_ids == [2]
    assert harness.chat.fanout.in_room(bob, conversation_room(conversation))


async def test_adding_to_a_conversation_that_does_not_exist_is_not_found(
    harness: ServiceHarness,
) -> None:
    server = rest_services(harness).server

    with pytest.raises(ChatError) as refused:
        await server.add_member(999, 2)

    assert refused.value.code == ErrorCode.NOT_FOUND
    assert await harness.storage.conversations.conversation_ids_of(2) == set()


async def test_the_added_user_alone_hears_conversation_added_from_the_main_site(
    harness: ServiceHarness,
) -> None:
    server = rest_services(harness).server
    conversation = await harness.conversation(1, title="Team")
    alice = await in_room(harness, 1, conversation)
    bob_phone, bob_laptop = await harness.user(2), await harness.user(2)

    assert await server.add_member(conversation, 2) is True
    assert await server.add_member(conversation, 2) is False  # no change, nothing said

    told = {"conversationId": conversation, "title": "Team", "members": [1, 2],
            "addedBy": None}
    for sid in (bob_phone, bob_laptop):
        assert harness.received(sid, "conversation:added") == [told]
    assert harness.received(alice, "conversation:added") == []


# -- removing members -------------------------------------------------------------------


async def test_the_removed_user_hears_conversation_removed_after_member_removed(
    harness: ServiceHarness,
) -> None:
    server = rest_services(harness).server
    conversation = await harness.conversation(1, 2)
    alice = await in_room(harness, 1, conversation)
    bob_in_room, bob_elsewhere = await in_room(harness, 2, conversation), await harness.user(2)

    await server.remove_member(conversation, 2)
    await settled(harness)

    told = {"conversationId": conversation, "removedBy": None}
    for sid in (bob_in_room, bob_elsewhere):
        assert harness.received(sid, "conversation:removed") == [told]
    heard = [name for name, _ in harness.received(bob_in_room)]
    assert heard.index("member:removed") < heard.index("conversation:removed")
    assert harness.received(alice, "conversation:removed") == []


async def test_a_removed_member_hears_member_removed_then_leaves_the_room(
    harness: ServiceHarness,
) -> None:
    server = rest_services(harness).server
    conversation = await harness.conversation(1, 2)
    room = conversation_room(conversation)
    alice = await in_room(harness, 1, conversation)
    bob_phone, bob_laptop = await in_room(harness, 2, conversation), await in_room(
        harness, 2, conversation)

    assert await server.remove_member(conversation, 2) is True
    await settled(harness)

    told = {"userId": 2, "conversationId": conversation, "removedBy": None}
    for sid in (alice, bob_phone, bob_laptop):
        assert harness.received(sid, "member:removed") == [told]
    assert [harness.chat.fanout.in_room(sid, room) for sid in (alice, bob_phone, bob_laptop)] == [
        True, False, False]
    await harness.send(alice, conversation, "bob is gone")
    assert harness.received(bob_phone, "message:new") == []
    assert await harness.storage.conversations.member_ids(conversation) == [1]


async def test_a_removed_members_next_send_is_forbidden_though_the_cache_knew_them(
    harness: ServiceHarness,
) -> None:
    server = rest_services(harness).server
    conversation = await harness.conversation(1, 2)
    bob = await in_room(harness, 2, conversation)
    await harness.send(bob, conversation, "still here")  # the cache now knows bob

    await server.remove_member(conversation, 2)
    await settled(harness)

    with pytest.raises(ChatError) as refused:
        await harness.send(bob, conversation, "let me in")
    assert refused.value.code == ErrorCode.FORBIDDEN


async def test_a_removed_member_stops_typing_in_that_conversation_only(
    harness: ServiceHarness,
) -> None:
    server = rest_services(harness).server
    first, second = await harness.conversation(1, 2), await harness.conversation(1, 2)
    alice = await in_room(harness, 1, first)
    await harness.chat.conversations.join(harness.actor(alice), second, None)
    bob = await in_room(harness, 2, first)
    await harness.chat.conversations.join(harness.actor(bob), second, None)
    for conversation in (first, second):
        await harness.chat.typing.start(harness.actor(bob), conversation)
    harness.forget_received()

    await server.remove_member(first, 2)
    await settled(harness)

    assert harness.received(alice, "typing:indicator") == [
        {"userId": 2, "conversationId": first, "isTyping": False}]
    assert harness.chat.typing.active == 1  # still typing in the second


async def test_removing_someone_who_is_not_a_member_changes_nothing_but_is_still_announced(
    harness: ServiceHarness,
) -> None:
    """Announced all the same, so that every node takes the user's sockets out of
    the room in case the main site deleted the row itself (see the next tests)."""
    server = rest_services(harness).server
    conversation = await harness.conversation(1, 2)
    alice = await in_room(harness, 1, conversation)

    assert await server.remove_member(conversation, 3) is False
    await settled(harness)

    assert harness.received(alice, "member:removed") == [
        {"userId": 3, "conversationId": conversation, "removedBy": None}]
    assert await harness.storage.conversations.member_ids(conversation) == [1, 2]


async def test_removing_from_a_conversation_that_does_not_exist_is_not_found(
    harness: ServiceHarness,
) -> None:
    server = rest_services(harness).server

    with pytest.raises(ChatError) as refused:
        await server.remove_member(999, 2)

    assert refused.value.code == ErrorCode.NOT_FOUND


# -- membership changes delivered from other nodes --------------------------------------


async def test_a_removal_delivered_from_another_node_takes_the_users_sockets_out_here(
    harness: ServiceHarness,
) -> None:
    rest_services(harness)
    conversation = await harness.conversation(1, 2)
    alice, bob = await in_room(harness, 1, conversation), await in_room(harness, 2, conversation)
    await harness.storage.conversations.remove_member(conversation, 2)  # by the other node

    await deliver_from_another_node(harness, "member:removed",
                                    {"userId": 2, "conversationId": conversation},
                                    conversation_room(conversation))
    await settled(harness)

    assert harness.received(bob, "member:removed") == [
        {"userId": 2, "conversationId": conversation}]
    room = conversation_room(conversation)
    assert (harness.chat.fanout.in_room(alice, room), harness.chat.fanout.in_room(bob, room)) == (
        True, False)


async def test_a_removal_delivered_from_another_node_forgets_the_cached_membership_here(
    harness: ServiceHarness,
) -> None:
    rest_services(harness)
    conversation = await harness.conversation(1, 2)
    bob = await harness.user(2)
    await harness.send(bob, conversation, "cached")  # the cache now knows bob
    await harness.storage.conversations.remove_member(conversation, 2)  # by the other node

    await deliver_from_another_node(harness, "member:removed",
                                    {"userId": 2, "conversationId": conversation},
                                    conversation_room(conversation))
    await settled(harness)

    with pytest.raises(ChatError) as refused:
        await harness.send(bob, conversation, "refused")
    assert refused.value.code == ErrorCode.FORBIDDEN


# Addresses a member:removed may come with that are not one conversation's room.
NOT_A_CONVERSATION_ROOM: dict[str, Callable[[int, str], Any]] = {
    "the users room": lambda conversation, sid: "user:2",
    "one socket": lambda conversation, sid: sid,
    "a list of rooms": lambda conversation, sid: [conversation_room(conversation)],
    "a conversation room without an id": lambda conversation, sid: "conversation:x",
}


@pytest.mark.parametrize("addressed", list(NOT_A_CONVERSATION_ROOM))
async def test_a_member_removed_not_addressed_to_one_conversation_room_moves_no_socket(
    harness: ServiceHarness, addressed: str,
) -> None:
    rest_services(harness)
    conversation = await harness.conversation(1, 2)
    bob = await in_room(harness, 2, conversation)
    room = NOT_A_CONVERSATION_ROOM[addressed](conversation, bob)

    await deliver_from_another_node(harness, "member:removed",
                                    {"userId": 2, "conversationId": conversation}, room)
    await settled(harness)

    assert harness.chat.fanout.in_room(bob, conversation_room(conversation))


async def test_a_member_removed_without_a_valid_user_id_moves_no_socket(
    harness: ServiceHarness,
) -> None:
    rest_services(harness)
    conversation = await harness.conversation(1, 2)
    bob = await in_room(harness, 2, conversation)
    room = conversation_room(conversation)

    for data in ({"conversationId": conversation}, {"userId": [2]}, "2"):
        await deliver_from_another_node(harness, "member:removed", data, room)
    await settled(harness)

    assert harness.chat.fanout.in_room(bob, room)


async def test_removing_a_member_already_removed_behind_the_servers_back_still_empties_the_room(
    harness: ServiceHarness,
) -> None:
    # The main site shares the database (DB_TABLE_PREFIX): it may delete the row
    # itself and then call the API so that the change takes effect on live sockets.
    server = rest_services(harness).server
    conversation = await harness.conversation(1, 2)
    alice, bob = await in_room(harness, 1, conversation), await in_room(harness, 2, conversation)
    await harness.storage.conversations.remove_member(conversation, 2)

    assert await server.remove_member(conversation, 2) is False
    await settled(harness)
    await harness.send(alice, conversation, "members only")

    assert not harness.chat.fanout.in_room(bob, conversation_room(conversation))
    assert harness.received(bob, "message:new") == []


async def test_conversation_added_delivered_from_another_node_wakes_the_users_poll_here(
    harness: ServiceHarness,
) -> None:
    """Another node created a conversation over REST (its rows are in the shared
    database) and emitted conversation:added to the members' rooms: the poll held
    here for one of them answers without waiting for the recheck timer."""
    rest = rest_services(harness)
    cursor, _ = await answer(start_poll(rest.feed, 2, None))
    poll = start_poll(rest.feed, 2, cursor)
    await until_parked(poll)
    conversation = await harness.storage.conversations.create_conversation(
        "elsewhere", [1, 2], harness.now_ms, ChangedBy(1))
    await until_parked(poll)
    assert not poll.done()  # the row alone wakes nobody until the recheck

    data = {"conversationId": conversation, "title": "elsewhere", "members": [1, 2],
            "addedBy": 1}
    await deliver_from_another_node(harness, "conversation:added", data,
                                    [user_room(1), user_room(2)])

    _, events = await answer(poll)  # the clock never moved
    assert [(e.wire()["event"], e.wire()["data"]) for e in events] == [
        ("conversation:added", data)]
