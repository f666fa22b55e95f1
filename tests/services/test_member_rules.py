"""MemberRules, through InboxService.create (the REST create): a conversation has at
most MAX_CONVERSATION_MEMBERS (ids merged, the creator counted); a user creates at
most RATE_LIMIT_CONVERSATIONS a minute (bursts of twice that); MEMBER_ADD_POLICY
says whom a user may put into it. A refused create writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.inbox import InboxService
from tests.services.conftest import ServiceHarness
from tests.services.feed_support import rest_services

HarnessFactory = Callable[..., AbstractAsyncContextManager[ServiceHarness]]


def inbox_of(harness: ServiceHarness) -> InboxService:
    return rest_services(harness).inbox


async def refused(inbox: InboxService, creator: int, members: list[int]) -> ErrorCode:
    with pytest.raises(ChatError) as caught:
        await inbox.create(creator, "t", members)
    return caught.value.code


async def conversations_of(harness: ServiceHarness, user: int) -> set[int]:
    return await harness.storage.conversations.conversation_ids_of(user)


# -- MAX_CONVERSATION_MEMBERS ---------------------------------------------------------------


async def test_the_cap_counts_distinct_members_with_the_creator(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MAX_CONVERSATION_MEMBERS="3") as harness:
        inbox = inbox_of(harness)

        assert await refused(inbox, 1, [2, 3, 4]) == ErrorCode.INVALID_PAYLOAD
        assert await conversations_of(harness, 2) == set()
        created = await inbox.create(1, "t", [2, 3, 2, 3, 1])
        assert created.members == (1, 2, 3)


# -- RATE_LIMIT_CONVERSATIONS ---------------------------------------------------------------


async def test_a_user_may_burst_twice_the_rate_then_one_per_interval(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(RATE_LIMIT_CONVERSATIONS="3") as harness:  # one per 20 s
        inbox = inbox_of(harness)
        for _ in range(6):
            await inbox.create(1, "t", [2])

        assert await refused(inbox, 1, [2]) == ErrorCode.RATE_LIMITED
        assert len(await conversations_of(harness, 2)) == 6
        await harness.advance(19)
        assert await refused(inbox, 1, [2]) == ErrorCode.RATE_LIMITED
        await harness.advance(1)
        await inbox.create(1, "t", [2])
        await inbox.create(3, "t", [2])  # another creator's own bucket


async def test_refused_creates_do_not_spend_the_rate(make_harness: HarnessFactory) -> None:
    async with make_harness(RATE_LIMIT_CONVERSATIONS="1", MAX_CONVERSATION_MEMBERS="2") as h:
        inbox = inbox_of(h)
        for _ in range(5):
            assert await refused(inbox, 1, [2, 3]) == ErrorCode.INVALID_PAYLOAD

        await inbox.create(1, "t", [2])
        await inbox.create(1, "t", [2])  # the burst of 2 is still whole


async def test_rate_0_turns_the_limit_off(make_harness: HarnessFactory) -> None:
    async with make_harness(RATE_LIMIT_CONVERSATIONS="0") as harness:
        inbox = inbox_of(harness)
        for _ in range(50):
            await inbox.create(1, "t", [2])
        assert len(await conversations_of(harness, 2)) == 50


# -- MEMBER_ADD_POLICY ----------------------------------------------------------------------


async def test_anyone_is_the_default(harness: ServiceHarness) -> None:
    assert harness.settings.member_add_policy == "anyone"
    created = await inbox_of(harness).create(1, "t", [2, 3])
    assert created.members == (1, 2, 3)


async def test_server_api_lets_a_user_create_only_a_conversation_of_their_own(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MEMBER_ADD_POLICY="server_api") as harness:
        inbox = inbox_of(harness)

        assert await refused(inbox, 1, [2]) == ErrorCode.FORBIDDEN
        assert await conversations_of(harness, 2) == set()
        assert (await inbox.create(1, "t", [1])).members == (1,)
        assert (await inbox.create(1, "t", [])).members == (1,)


async def test_contacts_lets_a_user_add_only_those_sharing_a_conversation(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MEMBER_ADD_POLICY="contacts") as harness:
        inbox = inbox_of(harness)
        await harness.conversation(1, 2)
        await harness.conversation(3, 4)

        assert await refused(inbox, 1, [2, 3]) == ErrorCode.FORBIDDEN
        assert await conversations_of(harness, 3) == {2}
        assert (await inbox.create(1, "t", [2])).members == (1, 2)
