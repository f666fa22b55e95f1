"""ReceiptService: a member's read position in a conversation only moves forward;
each advance is stored with the server's time and announced to the room as
message:read-receipt (not to the reading socket). A message that is not in the
conversation is NOT_FOUND; a non-member is FORBIDDEN."""

from __future__ import annotations

from typing import Any

import pytest

from ecigdis_ws.errors import ChatError, ErrorCode
from tests.services.conftest import ServiceHarness


async def messages(harness: ServiceHarness, conversation: int, count: int) -> list[int]:
    ids = []
    for i in range(count):
        result = await harness.storage.messages.store_message(
            conversation, 1, "user1", f"c{conversation}-{i}", f"t{i}", harness.now_ms
        )
        ids.append(result.message.id)
    return ids


async def read(harness: ServiceHarness, sid: str, conversation: int, message_id: int) -> bool:
    return await harness.chat.receipts.mark_read(
        harness.actor(sid), conversation, message_id
    )


def receipt(message_id: int, user_id: int, conversation: int, read_at: str) -> dict[str, Any]:
    return {"messageId": message_id, "userId": user_id, "conversationId": conversation,
            "readAt": read_at}


async def test_reading_a_message_advances_the_position_and_announces_a_receipt(
    harness: ServiceHarness,
) -> None:
    alice, bob, bob_tab = await harness.user(1), await harness.user(2), await harness.user(2)
    carol = await harness.user(3)  # a member whose socket is not in the room
    conversation = await harness.conversation(1, 2, 3)
    await harness.join(conversation, alice, bob, bob_tab)
    [message_id] = await messages(harness, conversation, 1)

    advanced = await read(harness, bob, conversation, message_id)

    assert advanced is True
    assert await harness.storage.receipts.last_read(conversation, 2) == message_id
    expected = [receipt(message_id, 2, conversation, "2027-01-15T08:00:00.000Z")]
    assert harness.received(alice, "message:read-receipt") == expected
    assert harness.received(bob_tab, "message:read-receipt") == expected
    assert harness.received(bob, "message:read-receipt") == []
    assert harness.received(carol, "message:read-receipt") == []


async def test_read_at_is_the_time_of_the_services_clock(harness: ServiceHarness) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)
    [message_id] = await messages(harness, conversation, 1)
    await harness.advance(61.25)

    await read(harness, bob, conversation, message_id)

    [announced] = harness.received(alice, "message:read-receipt")
    assert announced["readAt"] == "2027-01-15T08:01:01.250Z"


async def test_a_later_message_advances_the_position_again(harness: ServiceHarness) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)
    first, second = await messages(harness, conversation, 2)
    await read(harness, bob, conversation, first)

    advanced = await read(harness, bob, conversation, second)

    assert advanced is True
    assert await harness.storage.receipts.last_read(conversation, 2) == second
    assert [r["messageId"] for r in harness.received(alice, "message:read-receipt")] == [
        first, second
    ]


async def test_reading_an_earlier_message_does_not_move_the_position_back_or_announce(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)
    first, second = await messages(harness, conversation, 2)
    await read(harness, bob, conversation, second)

    advanced = await read(harness, bob, conversation, first)

    assert advanced is False
    assert await harness.storage.receipts.last_read(conversation, 2) == second
    assert [r["messageId"] for r in harness.received(alice, "message:read-receipt")] == [second]


async def test_reading_the_same_message_again_announces_nothing(harness: ServiceHarness) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation = await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)
    [message_id] = await messages(harness, conversation, 1)
    await read(harness, bob, conversation, message_id)

    advanced = await read(harness, bob, conversation, message_id)

    assert advanced is False
    assert len(harness.received(alice, "message:read-receipt")) == 1


async def test_read_positions_are_kept_per_user(harness: ServiceHarness) -> None:
    alice, bob, carol = await harness.user(1), await harness.user(2), await harness.user(3)
    conversation = await harness.conversation(1, 2, 3)
    await harness.join(conversation, alice, bob, carol)
    first, second = await messages(harness, conversation, 2)
    await read(harness, bob, conversation, second)

    advanced = await read(harness, carol, conversation, first)  # behind bob, but carol's own

    assert advanced is True
    assert await harness.storage.receipts.last_read(conversation, 2) == second
    assert await harness.storage.receipts.last_read(conversation, 3) == first
    assert await harness.storage.receipts.last_read(conversation, 1) is None


async def test_a_message_of_another_conversation_is_not_found_and_nothing_changes(
    harness: ServiceHarness,
) -> None:
    alice, bob = await harness.user(1), await harness.user(2)
    conversation, other = await harness.conversation(1, 2), await harness.conversation(1, 2)
    await harness.join(conversation, alice, bob)
    await harness.join(other, alice)
    [foreign] = await messages(harness, other, 1)

    with pytest.raises(ChatError) as refused:
        await read(harness, bob, conversation, foreign)

    assert refused.value.code == ErrorCode.NOT_FOUND
    assert await harness.storage.receipts.last_read(conversation, 2) is None
    assert await harness.storage.receipts.last_read(other, 2) is None
    assert harness.received(alice, "message:read-receipt") == []


async def test_a_message_that_does_not_exist_is_not_found(harness: ServiceHarness) -> None:
    bob = await harness.user(2)
    conversation = await harness.conversation(1, 2)

    with pytest.raises(ChatError) as refused:
        await read(harness, bob, conversation, 999_999)

    assert refused.value.code == ErrorCode.NOT_FOUND
    assert await harness.storage.receipts.last_read(conversation, 2) is None


async def test_a_non_member_cannot_mark_a_message_read(harness: ServiceHarness) -> None:
    alice, mallory = await harness.user(1), await harness.user(9)
    conversation = await harness.conversation(1)
    await harness.join(conversation, alice)
    [message_id] = await messages(harness, conversation, 1)

    with pytest.raises(ChatError) as refused:
        await read(harness, mallory, conversation, message_id)

    assert refused.value.code == ErrorCode.FORBIDDEN
    assert await harness.storage.receipts.last_read(conversation, 9) is None
    assert harness.received(alice, "message:read-receipt") == []
