"""ChatServices.build: every service of one server, wired together once. What the
wiring decides: one membership cache (`chat.access`, which the REST API shares)
behind every service that checks membership, each setting reaching the service it
governs, and ids read back from shared state parsed as USER_ID_TYPE says."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import pytest

from ecigdis_ws.domain import Actor, UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from tests.services.conftest import ServiceHarness

HarnessFactory = Callable[..., AbstractAsyncContextManager[ServiceHarness]]
# Everything a member does in a conversation, one service each.
Use = Callable[[ServiceHarness, Actor, int, int], Awaitable[object]]
USES: dict[str, Use] = {
    "conversation:join": lambda h, actor, c, m: h.chat.conversations.join(actor, c, None),
    "message:send": lambda h, actor, c, m: h.chat.messages.send(actor, c, "hi", f"b{m}"),
    "message:read": lambda h, actor, c, m: h.chat.receipts.mark_read(actor, c, m),
    "message:react": lambda h, actor, c, m: h.chat.reactions.toggle(actor, c, m, "👍"),
    "typing:start": lambda h, actor, c, m: h.chat.typing.start(actor, c),
    "presence:request": lambda h, actor, c, m: h.chat.conversations.online_members(actor, c),
}


async def cached_then_removed(harness: ServiceHarness) -> tuple[Actor, int, int]:
    """Bob's membership confirmed (by a send), then removed behind the server's
    back: only a cache that remembers it lets him in. (actor, conversation, a message)"""
    conversation = await harness.conversation(1, 2)
    alice = harness.actor(await harness.user(1))
    bob = harness.actor(await harness.user(2))
    message = await harness.chat.messages.send(alice, conversation, "hello", "a1")
    await harness.chat.messages.send(bob, conversation, "hello", "b0")
    await harness.storage.conversations.remove_member(conversation, 2)
    return bob, conversation, message.message.id


# -- one membership cache ---------------------------------------------------------------


async def test_a_membership_confirmed_by_one_service_is_trusted_by_every_other(
    harness: ServiceHarness,
) -> None:
    bob, conversation, message = await cached_then_removed(harness)

    for name, use in USES.items():
        try:
            await use(harness, bob, conversation, message)
        except ChatError as exc:
            pytest.fail(f"{name} asked the database, not the shared cache: {exc.code}")


async def test_a_membership_forgotten_by_chat_access_is_checked_again_by_every_service(
    harness: ServiceHarness,
) -> None:
    bob, conversation, message = await cached_then_removed(harness)

    harness.chat.access.memberships.forget(conversation, 2)

    for name, use in USES.items():
        with pytest.raises(ChatError) as refused:
            await use(harness, bob, conversation, message)
        assert refused.value.code == ErrorCode.FORBIDDEN, name


async def test_the_membership_cache_lasts_membership_cache_s(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MEMBERSHIP_CACHE_S="10") as harness:
        bob, conversation, message = await cached_then_removed(harness)
        await harness.advance(9.999)
        await harness.chat.receipts.mark_read(bob, conversation, message)

        await harness.advance(0.001)

        with pytest.raises(ChatError) as refused:
            await harness.chat.messages.send(bob, conversation, "late", "b9")
        assert refused.value.code == ErrorCode.FORBIDDEN


async def test_with_open_conversation_access_anyone_may_join_and_becomes_a_member(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(CONVERSATION_ACCESS="open") as harness:
        bob = harness.actor(await harness.user(2))

        joined = await harness.chat.conversations.join(bob, 77, None)
        assert joined.online_user_ids == [2]
        assert await harness.storage.conversations.member_ids(77) == [2]


# -- settings reach their services ------------------------------------------------------


async def test_the_server_id_is_server_id_or_else_the_host_name_and_port(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(SERVER_ID="node-a") as named:
        assert named.chat.server_id == "node-a"
    async with make_harness(WS_PORT="8123") as unnamed:
        assert unnamed.chat.server_id == f"{socket.gethostname()}:8123"


async def test_each_session_limit_comes_from_its_own_setting(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(
        AUTH_TIMEOUT_MS="5000", MAX_CONNECTIONS_PER_USER="2", MAX_UNAUTHENTICATED_PER_IP="3",
    ) as harness:
        anonymous = [await harness.socket(ip="10.0.0.1") for _ in range(3)]
        assert not harness.chat.admission.has_room("10.0.0.1")

        await harness.advance(4.999)
        assert harness.manager.disconnected == []
        await harness.advance(0.001)
        assert sorted(harness.manager.disconnected) == sorted(anonymous)

        await harness.user(7)
        await harness.user(7)
        with pytest.raises(ChatError) as per_user:
            await harness.user(7)
        assert per_user.value.code == ErrorCode.RATE_LIMITED


async def test_the_presence_grace_is_presence_grace_ms(make_harness: HarnessFactory) -> None:
    async with make_harness(PRESENCE_GRACE_MS="1500") as harness:
        watcher = await harness.user(1)
        leaving = await harness.user(2)
        await harness.close(leaving)

        await harness.advance(1.499)
        assert harness.received(watcher, "user:offline") == []
        await harness.advance(0.001)

        assert [e["userId"] for e in harness.received(watcher, "user:offline")] == [2]


async def test_the_typing_timeout_is_typing_timeout_ms(make_harness: HarnessFactory) -> None:
    async with make_harness(TYPING_TIMEOUT_MS="4000") as harness:
        conversation = await harness.conversation(1, 2)
        alice, bob = await harness.user(1), await harness.user(2)
        for sid in (alice, bob):
            await harness.chat.conversations.join(
                harness.actor(sid), conversation, None)
        await harness.chat.typing.start(harness.actor(bob), conversation)

        await harness.advance(3.999)
        assert [e["isTyping"] for e in harness.received(alice, "typing:indicator")] == [True]
        await harness.advance(0.001)

        assert [e["isTyping"] for e in harness.received(alice, "typing:indicator")] == [
            True, False]


async def test_presence_scope_contacts_tells_only_those_who_share_a_conversation(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(PRESENCE_SCOPE="contacts") as harness:
        await harness.conversation(1, 2)
        contact, stranger = await harness.user(2), await harness.user(3)

        await harness.user(1, "Alice")

        assert harness.received(contact, "user:online") == [{"userId": 1, "name": "Alice"}]
        assert harness.received(stranger, "user:online") == []


async def test_the_message_limit_is_rate_limit_messages_not_rate_limit_events(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(RATE_LIMIT_MESSAGES="1", RATE_LIMIT_EVENTS="50") as harness:
        conversation = await harness.conversation(7)
        sender = harness.actor(await harness.user(7))

        async def post(n: int) -> str:
            try:
                await harness.chat.messages.post(sender, conversation, "hi", f"m{n}")
            except ChatError as exc:
                return exc.code.value
            return "ok"

        assert [await post(n) for n in range(3)] == ["ok", "ok", "RATE_LIMITED"]  # bursts of 2


# -- ids read back from shared state ----------------------------------------------------


@pytest.mark.parametrize(("id_type", "typist"), [("int", 7), ("string", "007")])
async def test_a_typing_end_names_the_user_with_an_id_of_user_id_type(
    make_harness: HarnessFactory, id_type: str, typist: UserId,
) -> None:
    async with make_harness(USER_ID_TYPE=id_type) as harness:
        conversation = await harness.conversation("100", typist)
        watcher, typing = await harness.user("100"), await harness.user(typist)
        for sid in (watcher, typing):
            await harness.chat.conversations.join(
                harness.actor(sid), conversation, None)
        bob = harness.actor(typing)
        await harness.chat.typing.start(bob, conversation)

        await harness.chat.typing.stop(bob, conversation)  # its key is read back here

        assert harness.received(watcher, "typing:indicator")[-1] == {
            "userId": typist, "conversationId": conversation, "isTyping": False}
