"""conversation:join and conversation:leave, replay with `since`, and access."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from tests.support import ChatClient, RunningServer

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]


async def joined(client: ChatClient, conversation: int, **extra: int) -> dict[str, object]:
    reply: dict[str, object] = await client.call(
        "conversation:join", {"conversationId": conversation, **extra}
    )
    assert reply["ok"], reply
    return reply


async def send(client: ChatClient, conversation: int, text: str, message_id: str) -> int:
    ack = await client.call(
        "message:send", {"conversationId": conversation, "text": text, "messageId": message_id}
    )
    assert ack["ok"], ack
    return int(ack["id"])


async def test_join_ack_lists_online_members_including_the_joiner(server: RunningServer) -> None:
    conversation = await server.conversation(1, 2, 3)
    await server.client(2)
    await server.client(4)  # online, but not a member
    alice = await server.client(1)
    reply = await joined(alice, conversation)
    assert reply["conversationId"] == conversation
    assert sorted(reply["onlineUserIds"]) == [1, 2]  # type: ignore[type-var]


async def test_join_announces_user_joined_to_others_not_the_joiner(server: RunningServer) -> None:
    conversation = await server.conversation(1, 2)
    alice = await server.client(1)
    alice_tab = await server.client(1)
    bob = await server.client(2)
    await joined(alice, conversation)
    await joined(alice_tab, conversation)
    await joined(bob, conversation)
    expected = {"userId": 2, "conversationId": conversation}
    assert await alice.wait_for("user:joined", lambda e: e["userId"] == 2) == [expected]
    assert await alice_tab.wait_for("user:joined", lambda e: e["userId"] == 2) == [expected]
    await send(bob, conversation, "sentinel", "s1")
    await alice.wait_for("message:new")
    assert [e for e in bob.received("user:joined") if e["userId"] == 2] == []


async def test_non_member_cannot_join_and_nothing_is_announced(server: RunningServer) -> None:
    conversation = await server.conversation(1)
    alice = await server.client(1)
    await joined(alice, conversation)
    mallory = await server.client(9)
    reply = await mallory.call("conversation:join", {"conversationId": conversation})
    assert reply["error"]["code"] == "FORBIDDEN"
    [error] = await mallory.wait_for("error")
    assert error["code"] == "FORBIDDEN" and error["event"] == "conversation:join"
    assert server.chat.sessions.get(mallory.sio.get_sid()) is not None
    await send(alice, conversation, "sentinel", "s1")
    assert mallory.received("message:new") == []
    assert alice.received("user:joined") == []


async def test_unknown_conversation_is_forbidden(server: RunningServer) -> None:
    alice = await server.client(1)
    reply = await alice.call("conversation:join", {"conversationId": 12345})
    assert reply["error"]["code"] == "FORBIDDEN"


async def test_open_access_lets_anyone_join_and_makes_them_a_member(
    make_server: ServerFactory,
) -> None:
    async with make_server(CONVERSATION_ACCESS="open") as server:
        alice = await server.client(1)
        await joined(alice, 777)
        assert await server.chat.storage.conversations.is_member(777, 1)
        bob = await server.client(2)
        await send(bob, 777, "hello", "b1")  # any event makes the sender a member
        assert await server.chat.storage.conversations.is_member(777, 2)
        [message] = await alice.wait_for("message:new")
        assert message["text"] == "hello"


async def test_leave_announces_user_left_and_stops_delivery(server: RunningServer) -> None:
    conversation = await server.conversation(1, 2)
    alice = await server.client(1)
    bob = await server.client(2)
    await joined(alice, conversation)
    await joined(bob, conversation)
    reply = await bob.call("conversation:leave", {"conversationId": conversation})
    assert reply == {"ok": True, "conversationId": conversation}
    assert await alice.wait_for("user:left") == [{"userId": 2, "conversationId": conversation}]
    await send(alice, conversation, "after leave", "a1")
    await joined(bob, conversation, since=0)  # replay proves the message exists
    [replayed] = await bob.wait_for("message:new")
    assert replayed["text"] == "after leave"
    assert len(bob.received("message:new")) == 1


async def test_disconnect_sends_no_user_left(server: RunningServer) -> None:
    conversation = await server.conversation(1, 2)
    alice = await server.client(1)
    bob = await server.client(2)
    await joined(alice, conversation)
    await joined(bob, conversation)
    await server.disconnect(bob)
    await server.advance(3)  # past the presence grace: user:offline covers it
    await alice.wait_for("user:offline")
    assert alice.received("user:left") == []


async def test_join_with_since_replays_missed_messages_in_order(server: RunningServer) -> None:
    conversation = await server.conversation(1, 2)
    alice = await server.client(1)
    await joined(alice, conversation)
    ids = [await send(alice, conversation, f"m{i}", f"id{i}") for i in range(5)]
    bob = await server.client(2)
    await joined(bob, conversation, since=ids[1])
    replayed = await bob.wait_for("message:new", count=3)
    assert [m["id"] for m in replayed] == ids[2:]
    assert [m["text"] for m in replayed] == ["m2", "m3", "m4"]
    assert replayed[0]["userId"] == 1 and replayed[0]["messageId"] == "id2"
    await send(alice, conversation, "live", "live")
    live = await bob.wait_for("message:new", count=4)
    assert live[-1]["text"] == "live"


async def test_replay_covers_more_than_one_page(server: RunningServer) -> None:
    # Three pages of 200 and a bit, under REPLAY_MAX_MESSAGES (1000): the whole
    # replay (past the cap: tests/transport/test_replay_limits.py).
    conversation = await server.conversation(1, 2)
    storage = server.chat.storage
    for i in range(603):
        await storage.messages.store_message(conversation, 1, "Alice", f"bulk{i}", f"t{i}", i)
    bob = await server.client(2)
    reply = await joined(bob, conversation, since=0)
    replayed = await bob.wait_for("message:new", count=603)
    ids = [m["id"] for m in replayed]
    assert ids == sorted(ids) and len(set(ids)) == 603 and "resync" not in reply


async def test_join_with_invalid_since_is_invalid_payload(server: RunningServer) -> None:
    conversation = await server.conversation(1, 2)
    alice = await server.client(1)
    bob = await server.client(2)
    await joined(bob, conversation)
    for since in (-1, "abc", 1.5, True):
        reply = await alice.call("conversation:join", {"conversationId": conversation,
                                                       "since": since})
        assert reply["error"]["code"] == "INVALID_PAYLOAD", since
    await send(bob, conversation, "not for alice", "b1")
    await joined(bob, conversation)  # a round trip after the fan-out
    assert alice.received("message:new") == []
    assert bob.received("user:joined") == []


async def test_join_accepts_a_decimal_string_conversation_id(server: RunningServer) -> None:
    conversation = await server.conversation(1)
    alice = await server.client(1)
    reply = await alice.call("conversation:join", {"conversationId": str(conversation)})
    assert reply["ok"] and reply["conversationId"] == conversation
