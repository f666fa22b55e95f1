"""MemberAdminService: conversations their members run. Owners and admins add and
remove members and set roles, only owners make owners or remove admins, a member
leaves for good, the last owner leaving hands the role on, and every refusal
changes nothing (docs/protocol.md, Roles)."""

from __future__ import annotations

import pytest

from ecigdis_ws.domain import ChangedBy, UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from tests.services.conftest import ServiceHarness

OWNER, ADMIN, MEMBER, OTHER, OUTSIDER = 1, 2, 3, 4, 5


async def run_by_owner(harness: ServiceHarness, *members: UserId) -> int:
    """A conversation created over REST by OWNER (so its owner) with `members`."""
    return await harness.storage.conversations.create_conversation(
        "team", [OWNER, *members], harness.now_ms, ChangedBy(OWNER)
    )


async def roles(harness: ServiceHarness, conversation: int) -> dict[UserId, str]:
    return {m.user_id: m.role for m in await harness.storage.conversations.members(conversation)}


async def refused(code: ErrorCode, call: object) -> ChatError:
    with pytest.raises(ChatError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code == code, caught.value.message
    return caught.value


async def test_the_creator_owns_it_and_an_owner_makes_an_admin_who_adds_a_member(
    harness: ServiceHarness,
) -> None:
    owner, admin = await harness.user(OWNER), await harness.user(ADMIN)
    conversation = await run_by_owner(harness, ADMIN, MEMBER)
    assert await roles(harness, conversation) == {OWNER: "owner", ADMIN: "member",
                                                  MEMBER: "member"}
    await harness.join(conversation, owner)
    members = harness.chat.members

    assert await members.set_role(harness.actor(owner), conversation, ADMIN, "admin")
    assert await members.add(harness.actor(admin), conversation, OTHER)

    assert await roles(harness, conversation) == {OWNER: "owner", ADMIN: "admin",
                                                  MEMBER: "member", OTHER: "member"}
    assert harness.received(owner, "member:updated") == [
        {"conversationId": conversation, "userId": ADMIN, "role": "admin", "updatedBy": OWNER}]
    assert harness.received(owner, "member:added") == [
        {"conversationId": conversation, "userId": OTHER, "addedBy": ADMIN}]


async def test_a_member_may_neither_add_remove_nor_set_roles_and_nothing_changes(
    harness: ServiceHarness,
) -> None:
    member = await harness.user(MEMBER)
    conversation = await run_by_owner(harness, ADMIN, MEMBER)
    before = await roles(harness, conversation)
    members, actor = harness.chat.members, harness.actor(member)

    await refused(ErrorCode.FORBIDDEN, members.add(actor, conversation, OTHER))
    await refused(ErrorCode.FORBIDDEN, members.remove(actor, conversation, ADMIN))
    await refused(ErrorCode.FORBIDDEN, members.set_role(actor, conversation, MEMBER, "admin"))
    outsider = await harness.user(OUTSIDER)
    await refused(ErrorCode.FORBIDDEN,
                  members.add(harness.actor(outsider), conversation, OUTSIDER))

    assert await roles(harness, conversation) == before


async def test_only_an_owner_makes_owners_or_removes_an_admin(harness: ServiceHarness) -> None:
    owner, admin = await harness.user(OWNER), await harness.user(ADMIN)
    conversation = await run_by_owner(harness, ADMIN, MEMBER, OTHER)
    members = harness.chat.members
    await members.set_role(harness.actor(owner), conversation, ADMIN, "admin")
    await members.set_role(harness.actor(owner), conversation, OTHER, "admin")

    await refused(ErrorCode.FORBIDDEN,
                  members.set_role(harness.actor(admin), conversation, MEMBER, "owner"))
    await refused(ErrorCode.FORBIDDEN, members.remove(harness.actor(admin), conversation, OTHER))
    assert await members.remove(harness.actor(admin), conversation, MEMBER)  # a member: yes
    assert await members.remove(harness.actor(owner), conversation, OTHER)

    assert await roles(harness, conversation) == {OWNER: "owner", ADMIN: "admin"}


async def test_the_last_owner_cannot_step_down_but_leaving_hands_the_role_on(
    harness: ServiceHarness,
) -> None:
    owner, member = await harness.user(OWNER), await harness.user(MEMBER)
    conversation = await run_by_owner(harness, MEMBER, ADMIN)
    members = harness.chat.members
    await members.set_role(harness.actor(owner), conversation, ADMIN, "admin")
    await harness.join(conversation, member)

    await refused(ErrorCode.CONFLICT,
                  members.set_role(harness.actor(owner), conversation, OWNER, "member"))
    assert (await roles(harness, conversation))[OWNER] == "owner"

    harness.forget_received()
    assert await members.remove(harness.actor(owner), conversation, OWNER)  # leaving

    # The admin, not the member who joined earlier: admins come first.
    assert await roles(harness, conversation) == {ADMIN: "owner", MEMBER: "member"}
    assert harness.received(member, "member:removed") == [
        {"userId": OWNER, "conversationId": conversation, "removedBy": OWNER}]
    assert harness.received(member, "member:updated") == [
        {"conversationId": conversation, "userId": ADMIN, "role": "owner", "updatedBy": OWNER}]
    assert harness.received(owner, "conversation:removed") == [
        {"conversationId": conversation, "removedBy": OWNER}]


async def test_a_member_leaves_for_good_and_is_no_member_any_more(
    harness: ServiceHarness,
) -> None:
    member = await harness.user(MEMBER)
    conversation = await run_by_owner(harness, MEMBER)
    await harness.join(conversation, member)

    assert await harness.chat.members.remove(harness.actor(member), conversation, MEMBER)

    assert not await harness.storage.conversations.is_member(conversation, MEMBER)
    await refused(ErrorCode.FORBIDDEN, harness.chat.messages.post(
        harness.actor(member), conversation, "still here?", "m-after"))
    await refused(ErrorCode.FORBIDDEN, harness.chat.members.remove(
        harness.actor(member), conversation, MEMBER))


async def test_the_server_api_sets_any_role_and_renames(harness: ServiceHarness) -> None:
    owner = await harness.user(OWNER)
    conversation = await run_by_owner(harness, MEMBER)
    await harness.join(conversation, owner)

    assert await harness.chat.members.set_role(None, conversation, MEMBER, "owner")
    assert await harness.chat.conversations.rename(None, conversation, "renamed")

    assert await roles(harness, conversation) == {OWNER: "owner", MEMBER: "owner"}
    assert harness.received(owner, "conversation:updated") == [
        {"conversationId": conversation, "title": "renamed", "updatedBy": None}]
    assert harness.received(owner, "member:updated")[-1]["updatedBy"] is None


async def test_renaming_takes_an_admin_or_either_member_of_two(harness: ServiceHarness) -> None:
    owner, member, other = (await harness.user(OWNER), await harness.user(MEMBER),
                            await harness.user(OTHER))
    group = await run_by_owner(harness, MEMBER, OTHER)
    pair = await run_by_owner(harness, MEMBER)
    rename = harness.chat.conversations.rename

    await refused(ErrorCode.FORBIDDEN, rename(harness.actor(member), group, "mine now"))
    assert await rename(harness.actor(owner), group, "by the owner")
    assert await rename(harness.actor(member), pair, "just us")
    assert await harness.storage.conversations.conversation_title(group) == "by the owner"
    assert await harness.storage.conversations.conversation_title(pair) == "just us"
    assert harness.received(other, "conversation:updated") == [  # joined nowhere, told
        {"conversationId": group, "title": "by the owner", "updatedBy": OWNER}]
