"""typing:start / typing:stop and typing that ends by itself."""

from __future__ import annotations

from tests.support import RunningServer
from tests.transport.conftest import room


async def test_typing_start_and_stop_reach_the_others(server: RunningServer) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    assert (await alice.call("typing:start", {"conversationId": conversation}))["ok"]
    assert (await alice.call("typing:stop", {"conversationId": conversation}))["ok"]
    indicators = await bob.wait_for("typing:indicator", count=2)
    assert indicators == [
        {"userId": 1, "conversationId": conversation, "isTyping": True},
        {"userId": 1, "conversationId": conversation, "isTyping": False},
    ]
    assert alice.received("typing:indicator") == []


async def test_typing_ends_by_itself_after_the_timeout(server: RunningServer) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    await alice.call("typing:start", {"conversationId": conversation})
    await bob.wait_for("typing:indicator")
    await server.advance(5.9)
    assert len(bob.received("typing:indicator")) == 1
    await server.advance(0.2)
    [_, ended] = await bob.wait_for("typing:indicator", count=2)
    assert ended["isTyping"] is False
    assert server.chat.typing.active == 0


async def test_repeated_start_extends_without_a_new_broadcast(server: RunningServer) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    await alice.call("typing:start", {"conversationId": conversation})
    await server.advance(4)
    await alice.call("typing:start", {"conversationId": conversation})
    await server.advance(4)  # 8 s after the first start, 4 after the second
    await alice.call("message:read", {"conversationId": conversation, "messageId": 1})
    assert [i["isTyping"] for i in bob.received("typing:indicator")] == [True]
    await server.advance(2.1)
    assert [i["isTyping"] for i in
            await bob.wait_for("typing:indicator", count=2)] == [True, False]


async def test_stop_without_typing_sends_nothing(server: RunningServer) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    assert (await alice.call("typing:stop", {"conversationId": conversation}))["ok"]
    await alice.call("message:send", {"conversationId": conversation, "text": "s",
                                      "messageId": "s"})
    await bob.wait_for("message:new")
    assert bob.received("typing:indicator") == []


async def test_typing_in_a_foreign_conversation_is_forbidden(server: RunningServer) -> None:
    conversation, _ = await room(server, 1)
    mallory = await server.client(9)
    reply = await mallory.call("typing:start", {"conversationId": conversation})
    assert reply["error"]["code"] == "FORBIDDEN"
    assert server.chat.typing.active == 0


async def test_disconnect_ends_the_sockets_typing(server: RunningServer) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    await alice.call("typing:start", {"conversationId": conversation})
    await server.disconnect(alice)
    indicators = await bob.wait_for("typing:indicator", count=2)
    assert [i["isTyping"] for i in indicators] == [True, False]
