"""TypingService: a typing indicator per user and conversation, announced to the
conversation's room when it starts and when it ends. It ends on typing:stop, when
the user sends a message, when the socket leaves the room or disconnects, and by
itself TYPING_TIMEOUT_MS after the last typing:start; repeated starts only extend it.
Only members may type; the socket that typed never hears its own indicator."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from ecigdis_ws.errors import ChatError, ErrorCode
from tests.services.conftest import ServiceHarness

HarnessFactory = Callable[..., AbstractAsyncContextManager[ServiceHarness]]


def indicator(user_id: int, conversation_id: int, is_typing: bool) -> dict[str, Any]:
    return {"userId": user_id, "conversationId": conversation_id, "isTyping": is_typing}


async def start(harness: ServiceHarness, sid: str, conversation: int) -> None:
    await harness.chat.typing.start(harness.actor(sid), conversation)


async def test_typing_start_reaches_the_room_but_not_the_typing_socket(
    harness: ServiceHarness,
) -> None:
    alice, alice_tab, bob = await harness.user(1), await harness.user(1), await harness.user(2)
    carol = await harness.user(3)  # a member whose socket is not in the room
    conversation = await harness.conversation(1, 2, 3)
    await harness.join(conversation, alice, alice_tab, bob)

    await start(harness, alice, conversation)

    assert harness.received(bob, "typing:indicator") == [indicator(1, conversation, True)]
    assert harness.received(alice_tab, "typing:indicator") == [indicator(1, conversation, True)]
    assert harness.received(alice, "typing:indicator") == []
    assert harness.received(carol, "typing:indicator") == []
    assert harness.chat.typing.active == 1


async def test_typing_stop_announces_the_end_and_reports_that_the_user_was_typing(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)
    await start(harness, alice, conversation)

    stopped = await harness.chat.typing.stop(harness.actor(alice), conversation)

    assert stopped is True
    assert harness.received(bob, "typing:indicator") == [
        indicator(1, conversation, True), indicator(1, conversation, False),
    ]
    assert harness.received(alice, "typing:indicator") == []
    assert harness.chat.typing.active == 0


async def test_typing_stop_when_not_typing_returns_false_and_announces_nothing(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)

    stopped = await harness.chat.typing.stop(harness.actor(alice), conversation)

    assert stopped is False
    assert harness.received(bob, "typing:indicator") == []


async def test_typing_stops_by_itself_after_the_typing_timeout(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(TYPING_TIMEOUT_MS="3000") as harness:
        alice, alice_tab, bob = (
            await harness.user(1), await harness.user(1), await harness.user(2)
        )
        conversation = await harness.conversation(1, 2)
        await harness.join(conversation, alice, alice_tab, bob)
        await start(harness, alice, conversation)

        await harness.advance(2.99)
        assert harness.received(bob, "typing:indicator") == [indicator(1, conversation, True)]
        assert harness.chat.typing.active == 1

        await harness.advance(0.02)
        assert harness.received(bob, "typing:indicator") == [
            indicator(1, conversation, True), indicator(1, conversation, False),
        ]
        # The automatic end goes to the room except the socket that started typing.
        assert harness.received(alice_tab, "typing:indicator") == [
            indicator(1, conversation, True), indicator(1, conversation, False),
        ]
        assert harness.received(alice, "typing:indicator") == []
        assert harness.chat.typing.active == 0


async def test_a_repeated_start_extends_the_indicator_without_announcing_it_again(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(TYPING_TIMEOUT_MS="3000") as harness:
        alice, bob = await harness.user(1), await harness.user(2)
        conversation = await harness.conversation(1, 2)
        await harness.join(conversation, alice, bob)
        await start(harness, alice, conversation)
        await harness.advance(2)

        await start(harness, alice, conversation)
        await harness.advance(2)  # 4 s after the first start, 2 s after the second

        assert harness.received(bob, "typing:indicator") == [indicator(1, conversation, True)]
        await harness.advance(0.99)
        assert harness.received(bob, "typing:indicator") == [indicator(1, conversation, True)]
        await harness.advance(0.02)  # 3 s after the second start
        assert harness.received(bob, "typing:indicator") == [
            indicator(1, conversation, True), indicator(1, conversation, False),
        ]


async def test_an_indicator_stopped_by_hand_does_not_end_again_at_its_timeout(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(TYPING_TIMEOUT_MS="3000") as harness:
        alice, bob = await harness.user(1), await harness.user(2)
        conversation = await harness.conversation(1, 2)
        await harness.join(conversation, alice, bob)
        await start(harness, alice, conversation)
        await harness.chat.typing.stop(harness.actor(alice), conversation)

        await harness.advance(10)

        assert harness.received(bob, "typing:indicator") == [
            indicator(1, conversation, True), indicator(1, conversation, False),
        ]


async def test_typing_again_after_the_automatic_end_is_announced_again(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(TYPING_TIMEOUT_MS="3000") as harness:
        alice, bob = await harness.user(1), await harness.user(2)
        conversation = await harness.conversation(1, 2)
        await harness.join(conversation, alice, bob)
        await start(harness, alice, conversation)
        await harness.advance(3.01)

        await start(harness, alice, conversation)

        assert harness.received(bob, "typing:indicator") == [
            indicator(1, conversation, True),
            indicator(1, conversation, False),
            indicator(1, conversation, True),
        ]
        assert harness.chat.typing.active == 1


async def test_indicators_of_two_users_end_each_at_its_own_timeout(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(TYPING_TIMEOUT_MS="3000") as harness:
        alice, bob, carol = await harness.user(1), await harness.user(2), await harness.user(3)
        conversation = await harness.conversation(1, 2, 3)
        await harness.join(conversation, alice, bob, carol)
        await start(harness, alice, conversation)
        await harness.advance(1)
        await start(harness, bob, conversation)

        await harness.advance(2.01)  # alice's ends; bob's has 1 s to go
        assert harness.received(carol, "typing:indicator") == [
            indicator(1, conversation, True),
            indicator(2, conversation, True),
            indicator(1, conversation, False),
        ]
        assert harness.chat.typing.active == 1

        await harness.advance(1)
        assert harness.received(carol, "typing:indicator")[3:] == [
            indicator(2, conversation, False)
        ]


async def test_typing_in_a_conversation_the_user_is_not_a_member_of_is_forbidden(
    harness: ServiceHarness,
) -> None:
    alice, mallory = await harness.user(1), await harness.user(9)
    conversation = await harness.conversation(1)
    await harness.join(conversation, alice)

    with pytest.raises(ChatError) as started:
        await start(harness, mallory, conversation)
    with pytest.raises(ChatError) as stopped:
        await harness.chat.typing.stop(harness.actor(mallory), conversation)

    assert started.value.code == stopped.value.code == ErrorCode.FORBIDDEN
    assert harness.received(alice, "typing:indicator") == []
    assert harness.chat.typing.active == 0


async def test_sending_a_message_ends_the_senders_typing_after_delivering_the_message(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)
    await start(harness, alice, conversation)

    await harness.chat.messages.send(harness.actor(alice), conversation, "hi", "m")

    delivered = [(event, data) for event, data in harness.received(bob)
                 if event in ("message:new", "typing:indicator")]
    assert [(event, data.get("isTyping")) for event, data in delivered] == [
        ("typing:indicator", True), ("message:new", None), ("typing:indicator", False),
    ]
    assert delivered[2][1] == indicator(1, conversation, False)
    assert harness.received(alice, "typing:indicator") == []
    assert harness.chat.typing.active == 0


async def test_sending_a_message_while_not_typing_announces_no_typing_end(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)

    await harness.chat.messages.send(harness.actor(alice), conversation, "hi", "m")

    assert [m["text"] for m in harness.received(bob, "message:new")] == ["hi"]
    assert harness.received(bob, "typing:indicator") == []


async def test_sending_a_message_in_one_conversation_leaves_typing_in_another_alone(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    here, there = await harness.conversation(1, 2), await harness.conversation(1, 2)
    await harness.join(here, alice, bob)
    await harness.join(there, alice, bob)
    await start(harness, alice, there)

    await harness.chat.messages.send(harness.actor(alice), here, "hi", "m")

    assert harness.received(bob, "typing:indicator") == [indicator(1, there, True)]
    assert harness.chat.typing.active == 1


async def test_leaving_the_room_ends_that_sockets_typing_in_that_conversation_only(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    left, stayed = await harness.conversation(1, 2), await harness.conversation(1, 2)
    await harness.join(left, alice, bob)
    await harness.join(stayed, alice, bob)
    await start(harness, alice, left)
    await start(harness, alice, stayed)

    await harness.chat.conversations.leave(harness.actor(alice), left)

    after_leave = [(event, data) for event, data in harness.received(bob)
                   if event in ("typing:indicator", "user:left")][2:]
    assert after_leave == [
        ("typing:indicator", indicator(1, left, False)),
        ("user:left", {"userId": 1, "conversationId": left}),
    ]
    assert harness.chat.typing.active == 1  # still typing in the other conversation


async def test_disconnecting_ends_every_indicator_the_socket_started(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    first, second = await harness.conversation(1, 2), await harness.conversation(1, 2)
    await harness.join(first, alice, bob)
    await harness.join(second, alice, bob)
    await start(harness, alice, first)
    await start(harness, alice, second)

    await harness.close(alice)

    assert harness.received(bob, "typing:indicator") == [
        indicator(1, first, True), indicator(1, second, True),
        indicator(1, first, False), indicator(1, second, False),
    ]
    assert harness.chat.typing.active == 0


async def test_closing_another_socket_of_the_same_user_does_not_end_the_typing(
    harness: ServiceHarness,
) -> None:
    alice, alice_tab, bob = await harness.user(1), await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, alice_tab, bob)
    await start(harness, alice, conversation)

    await harness.close(alice_tab)

    assert harness.received(bob, "typing:indicator") == [indicator(1, conversation, True)]
    assert harness.chat.typing.active == 1


async def test_an_indicator_ended_by_disconnect_does_not_end_again_at_its_timeout(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(TYPING_TIMEOUT_MS="3000") as harness:
        alice, bob = await harness.user(1), await harness.user(2)
        conversation = await harness.conversation(1, 2)
        await harness.join(conversation, alice, bob)
        await start(harness, alice, conversation)
        await harness.close(alice)

        await harness.advance(10)

        assert harness.received(bob, "typing:indicator") == [
            indicator(1, conversation, True), indicator(1, conversation, False),
        ]


async def test_a_start_in_the_moment_the_timeout_fires_keeps_the_user_shown_as_typing(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(TYPING_TIMEOUT_MS="3000") as harness:
        alice, bob = await harness.user(1), await harness.user(2)
        conversation = await harness.conversation(1, 2)
        await harness.join(conversation, alice, bob)
        await start(harness, alice, conversation)

        # The timer fires and schedules the end as a task; before that task runs (one
        # turn of the event loop, as when a typing:start was already queued), the user
        # starts typing again. Only the clock is moved here, so the task waits.
        harness.clock.advance(3)
        await start(harness, alice, conversation)
        await harness.chat.tasks.drain()

        assert harness.chat.typing.active == 1
        assert harness.received(bob, "typing:indicator")[-1] == indicator(1, conversation, True)
        await harness.advance(3.01)  # and it ends 3 s after that last start
        assert harness.received(bob, "typing:indicator")[-1] == indicator(1, conversation, False)
        assert harness.chat.typing.active == 0
