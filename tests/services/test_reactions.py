"""ReactionService: a member's emoji on a message toggles: added the first time,
removed the next, per user and per emoji; every toggle is announced to the room as
message:reaction with its action (not to the reacting socket). A message that is
not in the conversation is NOT_FOUND; a non-member is FORBIDDEN."""

from __future__ import annotations

from typing import Any

import pytest

from ecigdis_ws.domain import ReactionAction
from ecigdis_ws.errors import ChatError, ErrorCode
from tests.services.conftest import ServiceHarness

THUMBS_UP = "👍🏽"  # thumbs up with a skin tone: two code points, stored as one emoji
FAMILY = "👨‍👩‍👧"  # a ZWJ sequence


async def message(harness: ServiceHarness, conversation: int, client_id: str = "c") -> int:
    result = await harness.storage.messages.store_message(
        conversation, 1, "user1", client_id, "text", harness.now_ms
    )
    return result.message.id


async def react(
    harness: ServiceHarness, sid: str, conversation: int, message_id: int, emoji: str
) -> ReactionAction:
    return await harness.chat.reactions.toggle(
        harness.actor(sid), conversation, message_id, emoji
    )


def reaction(
    message_id: int, emoji: str, user_id: int, conversation: int, action: str
) -> dict[str, Any]:
    return {"messageId": message_id, "emoji": emoji, "userId": user_id,
            "conversationId": conversation, "action": action}


async def test_the_first_toggle_adds_the_reaction_and_announces_it(
    harness: ServiceHarness,
) -> None:
    alice, bob, bob_tab = await harness.user(1), await harness.user(2), await harness.user(2)
    carol = await harness.user(3)  # a member whose socket is not in the room
    conversation = await harness.conversation(1, 2, 3)
    await harness.join(conversation, alice, bob, bob_tab)
    message_id = await message(harness, conversation)

    action = await react(harness, bob, conversation, message_id, THUMBS_UP)

    assert action == "added"
    assert await harness.storage.reactions.reactions(message_id) == [(2, THUMBS_UP)]
    expected = [reaction(message_id, THUMBS_UP, 2, conversation, "added")]
    assert harness.received(alice, "message:reaction") == expected
    assert harness.received(bob_tab, "message:reaction") == expected
    assert harness.received(bob, "message:reaction") == []
    assert harness.received(carol, "message:reaction") == []


async def test_the_second_toggle_removes_the_reaction_and_announces_the_removal(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)
    message_id = await message(harness, conversation)
    await react(harness, bob, conversation, message_id, THUMBS_UP)

    action = await react(harness, bob, conversation, message_id, THUMBS_UP)

    assert action == "removed"
    assert await harness.storage.reactions.reactions(message_id) == []
    assert harness.received(alice, "message:reaction") == [
        reaction(message_id, THUMBS_UP, 2, conversation, "added"),
        reaction(message_id, THUMBS_UP, 2, conversation, "removed"),
    ]


async def test_a_third_toggle_adds_the_reaction_again(harness: ServiceHarness) -> None:
    bob = await harness.user(2)
    conversation = await harness.conversation(1, 2)
    message_id = await message(harness, conversation)

    actions = [await react(harness, bob, conversation, message_id, THUMBS_UP) for _ in range(3)]

    assert actions == ["added", "removed", "added"]
    assert await harness.storage.reactions.reactions(message_id) == [(2, THUMBS_UP)]


async def test_reactions_toggle_separately_per_user_and_per_emoji(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    message_id = await message(harness, conversation)
    assert await react(harness, bob, conversation, message_id, THUMBS_UP) == "added"

    others = [
        await react(harness, alice, conversation, message_id, THUMBS_UP),  # same emoji, alice
        await react(harness, bob, conversation, message_id, FAMILY),  # bob, another emoji
    ]

    assert others == ["added", "added"]
    assert sorted(await harness.storage.reactions.reactions(message_id), key=str) == sorted(
        [(2, THUMBS_UP), (1, THUMBS_UP), (2, FAMILY)], key=str
    )


async def test_a_reaction_belongs_to_its_message_only(harness: ServiceHarness) -> None:
    bob = await harness.user(2)
    conversation = await harness.conversation(1, 2)
    first = await message(harness, conversation, "a")
    second = await message(harness, conversation, "b")
    await react(harness, bob, conversation, first, THUMBS_UP)

    action = await react(harness, bob, conversation, second, THUMBS_UP)

    assert action == "added"
    assert await harness.storage.reactions.reactions(first) == [(2, THUMBS_UP)]
    assert await harness.storage.reactions.reactions(second) == [(2, THUMBS_UP)]


async def test_reacting_to_a_message_of_another_conversation_is_not_found(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation, other = await harness.conversation(1, 2), await harness.conversation(1, 2)
    await harness.join(conversation, alice)
    await harness.join(other, alice)
    foreign = await message(harness, other)

    with pytest.raises(ChatError) as refused:
        await react(harness, bob, conversation, foreign, THUMBS_UP)

    assert refused.value.code == ErrorCode.NOT_FOUND
    assert await harness.storage.reactions.reactions(foreign) == []
    assert harness.received(alice, "message:reaction") == []


async def test_reacting_to_a_message_that_does_not_exist_is_not_found(
    harness: ServiceHarness,
) -> None:
    bob = await harness.user(2)
    conversation = await harness.conversation(1, 2)

    with pytest.raises(ChatError) as refused:
        await react(harness, bob, conversation, 999_999, THUMBS_UP)

    assert refused.value.code == ErrorCode.NOT_FOUND


async def test_a_non_member_cannot_react_and_nothing_is_stored_or_announced(
    harness: ServiceHarness,
) -> None:
    alice, mallory = await harness.user(1), await harness.user(9)
    conversation = await harness.conversation(1)
    await harness.join(conversation, alice)
    message_id = await message(harness, conversation)

    with pytest.raises(ChatError) as refused:
        await react(harness, mallory, conversation, message_id, THUMBS_UP)

    assert refused.value.code == ErrorCode.FORBIDDEN
    assert await harness.storage.reactions.reactions(message_id) == []
    assert harness.received(alice, "message:reaction") == []
