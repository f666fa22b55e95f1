from __future__ import annotations

from tests.support import RunningServer


async def test_two_members_exchange_a_message(server: RunningServer) -> None:
    conversation = await server.conversation(1, 2)
    alice = await server.client(1, "Alice")
    bob = await server.client(2, "Bob")
    assert (await alice.call("conversation:join", {"conversationId": conversation}))["ok"]
    assert (await bob.call("conversation:join", {"conversationId": conversation}))["ok"]
    ack = await alice.call(
        "message:send", {"conversationId": conversation, "text": "hi 👋", "messageId": "m1"}
    )
    assert ack["ok"] and ack["status"] == "sent"
    [message] = await bob.wait_for("message:new")
    assert message["text"] == "hi 👋"
    assert message["senderName"] == "Alice"
    assert message["id"] == ack["id"]
