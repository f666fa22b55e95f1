"""History with its state, through the real server on both backends: a message
reacted to by two users shows its reactions (counts, user ids, in the order of
first use) in a REST page, in a replay with `since` and in the long-poll; the
members' read positions come in the REST page's `reads` and in the join ack. A
live `message:new` keeps its shape. (docs/protocol.md, "History with its state")"""

from __future__ import annotations

from typing import Any

from ecigdis_ws.domain import iso_ms
from tests.support import ChatClient, RunningServer
from tests.transport.conftest import room
from tests.transport.rest_support import Rest

LIVE_KEYS = {"id", "messageId", "conversationId", "userId", "senderName", "text", "createdAt"}


def now_ms(server: RunningServer) -> int:
    return int(server.clock.now() * 1000)


async def call(client: ChatClient, event: str, **data: Any) -> Any:
    reply = await client.call(event, data)
    assert reply["ok"], reply
    return reply


class Scene:
    """Alice (1) sends two messages; Carol (3), then Bob (2), react 👍 to the first,
    Bob adds 🎉 after; Bob reads up to the second. Dave (4) is a member who
    arrives late and has read nothing; the clock moves a second between steps,
    so the order of first use is the order of time."""

    conversation: int
    first: int
    second: int
    bob_read_at_ms: int

    @classmethod
    async def play(cls, server: RunningServer) -> Scene:
        scene = cls()
        conversation, (alice, bob, carol) = await room(server, 1, 2, 3)
        await server.chat.storage.conversations.add_member(conversation, 4, now_ms(server))
        scene.conversation = conversation
        send = {"conversationId": conversation, "text": "first", "messageId": "f"}
        scene.first = (await call(alice, "message:send", **send))["id"]
        send = {**send, "text": "second", "messageId": "s"}
        scene.second = (await call(alice, "message:send", **send))["id"]
        for client, emoji in ((carol, "👍"), (bob, "👍"), (bob, "🎉")):
            await server.advance(1)
            await call(client, "message:react", conversationId=conversation,
                       messageId=scene.first, emoji=emoji)
        await server.advance(1)
        scene.bob_read_at_ms = now_ms(server)
        await call(bob, "message:read", conversationId=conversation, messageId=scene.second)
        return scene

    @property
    def reactions(self) -> list[list[dict[str, Any]]]:
        """What the two messages carry, in order."""
        return [
            [{"emoji": "👍", "count": 2, "userIds": [3, 2]},
             {"emoji": "🎉", "count": 1, "userIds": [2]}],
            [],
        ]

    @property
    def reads(self) -> list[dict[str, Any]]:
        return [{"userId": 2, "messageId": self.second, "readAt": iso_ms(self.bob_read_at_ms)}]


async def test_a_rest_page_carries_each_messages_reactions_and_the_members_reads(
    server: RunningServer, rest: Rest
) -> None:
    scene = await Scene.play(server)

    reply = await rest.get(f"/conversations/{scene.conversation}/messages", user=4)

    assert reply.status == 200, reply.body
    assert [m["id"] for m in reply.body["messages"]] == [scene.first, scene.second]
    assert [m["reactions"] for m in reply.body["messages"]] == scene.reactions
    assert reply.body["reads"] == scene.reads
    assert reply.body["hasMore"] is False
    # A page of the newer message alone, read `since` the first: the same state.
    since = await rest.get(f"/conversations/{scene.conversation}/messages", user=4,
                           params={"since": str(scene.first)})
    assert [m["reactions"] for m in since.body["messages"]] == scene.reactions[1:]
    assert since.body["reads"] == scene.reads


async def test_a_replay_with_since_carries_reactions_and_the_join_ack_the_reads(
    server: RunningServer,
) -> None:
    scene = await Scene.play(server)
    dave = await server.client(4, "Dave")

    ack = await call(dave, "conversation:join", conversationId=scene.conversation, since=0)

    replayed = dave.received("message:new")
    assert [m["id"] for m in replayed] == [scene.first, scene.second]
    assert [m["reactions"] for m in replayed] == scene.reactions
    assert ack["reads"] == scene.reads
    assert sorted(ack["onlineUserIds"]) == [1, 2, 3, 4]


async def test_a_join_without_since_still_tells_the_read_positions(
    server: RunningServer,
) -> None:
    scene = await Scene.play(server)
    dave = await server.client(4, "Dave")

    ack = await call(dave, "conversation:join", conversationId=scene.conversation)

    assert ack["reads"] == scene.reads
    assert dave.received("message:new") == []


async def test_the_long_poll_carries_the_reactions_of_the_messages_it_returns(
    server: RunningServer, rest: Rest
) -> None:
    start = await rest.poll(4)
    scene = await Scene.play(server)

    events: list[dict[str, Any]] = []
    cursor = start.body["cursor"]
    while len(events) < 6:  # two messages, three reactions, one receipt
        reply = await rest.poll(4, cursor)
        assert reply.status == 200, reply.body
        events += reply.body["events"]
        cursor = reply.body["cursor"]

    messages = [e["data"] for e in events if e["event"] == "message:new"]
    assert [m["id"] for m in messages] == [scene.first, scene.second]
    assert [m["reactions"] for m in messages] == scene.reactions


async def test_a_live_message_new_keeps_its_shape(server: RunningServer) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    await call(alice, "message:send", conversationId=conversation, text="hi", messageId="h")
    [live] = await bob.wait_for("message:new")
    assert set(live) == LIVE_KEYS  # nothing added on the hot path


async def test_a_reaction_taken_back_is_gone_from_history(
    server: RunningServer, rest: Rest
) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    ack = await call(alice, "message:send", conversationId=conversation, text="x", messageId="x")
    react = {"conversationId": conversation, "messageId": ack["id"], "emoji": "👍"}
    await call(bob, "message:react", **react)
    await call(bob, "message:react", **react)

    reply = await rest.get(f"/conversations/{conversation}/messages", user=1)

    assert [m["reactions"] for m in reply.body["messages"]] == [[]]
    assert reply.body["reads"] == []
