"""AccessPolicy: who may use a conversation. With CONVERSATION_ACCESS=members only
users listed as members may (FORBIDDEN otherwise, unknown conversations included);
with `open` anyone may, and is listed as a member (the conversation created if
need be) on first use. A confirmed membership is remembered by the MembershipCache
for MEMBERSHIP_CACHE_S (0: not at all), so a change made behind the server's back
is honoured only once that has passed; a change made through this server forgets
the entry at once. Refusals are never remembered."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from ecigdis_ws.clock import ManualClock
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services import access
from ecigdis_ws.services.access import MembershipCache
from ecigdis_ws.services.server_api import ServerApiService
from tests.services.conftest import ServiceHarness

HarnessFactory = Callable[..., AbstractAsyncContextManager[ServiceHarness]]


async def allowed(harness: ServiceHarness, conversation: int, user_id: int) -> bool:
    try:
        await harness.chat.access.require_member(conversation, user_id)
    except ChatError as refused:
        assert refused.code == ErrorCode.FORBIDDEN
        return False
    return True


async def remove_behind_the_servers_back(
    harness: ServiceHarness, conversation: int, user_id: int
) -> None:
    """As another node, the CLI or an operator would: the row goes, no cache is told."""
    assert await harness.storage.conversations.remove_member(conversation, user_id)


def server_api(harness: ServiceHarness) -> ServerApiService:
    """The main site's membership changes, as the composition root wires them."""
    return harness.chat.server


# -- the access modes ---------------------------------------------------------------


async def test_a_listed_member_is_allowed(harness: ServiceHarness) -> None:
    conversation = await harness.conversation(1, 2)

    assert await allowed(harness, conversation, 2)


async def test_a_user_who_is_not_listed_is_forbidden(harness: ServiceHarness) -> None:
    conversation = await harness.conversation(1, 2)

    with pytest.raises(ChatError) as refused:
        await harness.chat.access.require_member(conversation, 9)

    assert refused.value.code == ErrorCode.FORBIDDEN
    assert await harness.storage.conversations.member_ids(conversation) == [1, 2]


async def test_a_member_of_another_conversation_is_forbidden_here(
    harness: ServiceHarness,
) -> None:
    mine, theirs = await harness.conversation(1), await harness.conversation(9)

    assert not await allowed(harness, mine, 9)
    assert await allowed(harness, theirs, 9)


async def test_an_unknown_conversation_is_forbidden_and_not_created(
    harness: ServiceHarness,
) -> None:
    assert not await allowed(harness, 4242, 1)
    assert not await harness.storage.conversations.conversation_exists(4242)


async def test_with_open_access_any_user_becomes_a_member_on_first_use(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(CONVERSATION_ACCESS="open") as harness:
        conversation = await harness.conversation(1)

        assert await allowed(harness, conversation, 9)

        assert await harness.storage.conversations.member_ids(conversation) == [1, 9]


async def test_with_open_access_an_unknown_conversation_is_created_with_the_user_in_it(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(CONVERSATION_ACCESS="open") as harness:
        assert await allowed(harness, 4242, 9)

        assert await harness.storage.conversations.conversation_exists(4242)
        assert await harness.storage.conversations.member_ids(4242) == [9]


# -- the membership cache, through the policy ----------------------------------------


async def test_a_confirmed_membership_is_trusted_until_membership_cache_s_has_passed(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MEMBERSHIP_CACHE_S="30") as harness:
        conversation = await harness.conversation(1)
        assert await allowed(harness, conversation, 1)
        await remove_behind_the_servers_back(harness, conversation, 1)

        await harness.advance(29.9)

        assert await allowed(harness, conversation, 1)  # the cached answer


async def test_a_cached_membership_is_asked_again_once_membership_cache_s_has_passed(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MEMBERSHIP_CACHE_S="30") as harness:
        conversation = await harness.conversation(1)
        assert await allowed(harness, conversation, 1)
        await remove_behind_the_servers_back(harness, conversation, 1)

        await harness.advance(30)

        assert not await allowed(harness, conversation, 1)


async def test_using_a_cached_membership_does_not_extend_it(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MEMBERSHIP_CACHE_S="30") as harness:
        conversation = await harness.conversation(1)
        assert await allowed(harness, conversation, 1)
        await harness.advance(20)
        assert await allowed(harness, conversation, 1)  # from the cache, at 20 s
        await remove_behind_the_servers_back(harness, conversation, 1)

        await harness.advance(10)  # 30 s after the database last said yes

        assert not await allowed(harness, conversation, 1)


async def test_a_membership_still_listed_when_its_entry_expires_is_trusted_for_another_period(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MEMBERSHIP_CACHE_S="30") as harness:
        conversation = await harness.conversation(1)
        assert await allowed(harness, conversation, 1)
        await harness.advance(30)
        assert await allowed(harness, conversation, 1)  # asked the database again at 30 s
        await remove_behind_the_servers_back(harness, conversation, 1)

        await harness.advance(29.9)

        assert await allowed(harness, conversation, 1)


async def test_a_refusal_is_not_cached_so_a_member_added_later_is_allowed_at_once(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MEMBERSHIP_CACHE_S="30") as harness:
        conversation = await harness.conversation(1)
        assert not await allowed(harness, conversation, 9)

        await harness.storage.conversations.add_member(conversation, 9, harness.now_ms)

        assert await allowed(harness, conversation, 9)


async def test_with_membership_cache_s_zero_a_removal_is_honoured_at_once(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MEMBERSHIP_CACHE_S="0") as harness:
        conversation = await harness.conversation(1)
        assert await allowed(harness, conversation, 1)

        await remove_behind_the_servers_back(harness, conversation, 1)

        assert not await allowed(harness, conversation, 1)
        assert not harness.chat.access.memberships.knows(conversation, 1)


async def test_with_open_access_a_membership_removed_elsewhere_is_listed_again_after_expiry(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(CONVERSATION_ACCESS="open", MEMBERSHIP_CACHE_S="30") as harness:
        conversation = await harness.conversation(1)
        assert await allowed(harness, conversation, 1)
        await remove_behind_the_servers_back(harness, conversation, 1)
        assert await allowed(harness, conversation, 1)  # cached: nothing written
        assert await harness.storage.conversations.member_ids(conversation) == []

        await harness.advance(30)
        assert await allowed(harness, conversation, 1)

        assert await harness.storage.conversations.member_ids(conversation) == [1]


async def test_forgetting_a_membership_makes_the_next_check_ask_the_database(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MEMBERSHIP_CACHE_S="30") as harness:
        conversation = await harness.conversation(1, 2)
        assert await allowed(harness, conversation, 1)
        assert await allowed(harness, conversation, 2)
        await remove_behind_the_servers_back(harness, conversation, 1)
        await remove_behind_the_servers_back(harness, conversation, 2)

        harness.chat.access.memberships.forget(conversation, 1)

        assert not await allowed(harness, conversation, 1)
        assert await allowed(harness, conversation, 2)  # only that one entry was forgotten


async def test_a_member_removed_through_the_server_api_is_forbidden_at_once(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MEMBERSHIP_CACHE_S="30") as harness:
        conversation = await harness.conversation(1, 2)
        assert await allowed(harness, conversation, 2)

        assert await server_api(harness).remove_member(conversation, 2)

        assert not await allowed(harness, conversation, 2)
        assert await allowed(harness, conversation, 1)


async def test_a_forbidden_user_does_not_reach_the_cache(harness: ServiceHarness) -> None:
    conversation = await harness.conversation(1)

    assert not await allowed(harness, conversation, 9)

    assert not harness.chat.access.memberships.knows(conversation, 9)
    assert harness.chat.access.memberships.knows(conversation, 1) is False  # never checked


# -- MembershipCache on its own -------------------------------------------------------


def test_the_cache_knows_a_membership_from_its_confirmation_until_the_ttl() -> None:
    clock = ManualClock()
    cache = MembershipCache(clock, 30)
    cache.confirm(1, 7)

    clock.advance(29.5)  # (halves: exact in floating point, so 30 s is exactly the TTL)
    assert cache.knows(1, 7)
    assert not cache.knows(1, 8) and not cache.knows(2, 7)
    clock.advance(0.5)
    assert not cache.knows(1, 7)


def test_a_new_confirmation_restarts_the_ttl() -> None:
    clock = ManualClock()
    cache = MembershipCache(clock, 30)
    cache.confirm(1, 7)
    clock.advance(20)

    cache.confirm(1, 7)
    clock.advance(29.9)

    assert cache.knows(1, 7)


def test_with_a_ttl_of_zero_nothing_is_remembered() -> None:
    cache = MembershipCache(ManualClock(), 0)

    cache.confirm(1, 7)

    assert not cache.knows(1, 7)


def test_beyond_its_capacity_the_cache_forgets_the_least_recently_used_membership(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bound is 100,000 entries; filling that many takes a fifth of a second, so
    # the module's constant is lowered to 3 for this test (confirm reads it each time).
    monkeypatch.setattr(access, "MEMBERSHIP_CACHE_ENTRIES", 3)
    cache = MembershipCache(ManualClock(), 60)
    cache.confirm(1, 7)  # the oldest confirmation, but used again below
    cache.confirm(2, 7)
    cache.confirm(3, 7)
    assert cache.knows(1, 7)  # a use makes it the most recent

    cache.confirm(4, 7)

    assert not cache.knows(2, 7)  # the least recently used went
    assert [cache.knows(c, 7) for c in (1, 3, 4)] == [True, True, True]
