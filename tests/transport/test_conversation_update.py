"""conversation:update, the worked example of an operation declared once
(transport/chat_operations.py): a member renames a conversation over the socket
or with PATCH over REST, through the real server on both backends; the others in
the room hear conversation:updated, a member's long-poll carries it."""

from __future__ import annotations

from ecigdis_ws.storage.base import Storage
from tests.support import RunningServer
from tests.transport.conftest import room
from tests.transport.rest_support import Rest


def storage(server: RunningServer) -> Storage:
    return server.chat.storage


async def test_a_member_renames_over_the_socket_and_the_room_hears_it(
    server: RunningServer,
) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)

    reply = await alice.call("conversation:update",
                             {"conversationId": conversation, "title": "Shop floor"})

    assert reply == {"ok": True, "conversationId": conversation, "title": "Shop floor",
                     "changed": True}
    [updated] = await bob.wait_for("conversation:updated")
    assert updated == {"conversationId": conversation, "title": "Shop floor", "updatedBy": 1}
    assert await storage(server).conversations.conversation_title(conversation) == "Shop floor"
    assert alice.received("conversation:updated") == []  # the caller has its ack


async def test_the_same_title_again_changes_nothing_and_tells_no_one(
    server: RunningServer,
) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    await alice.call("conversation:update", {"conversationId": conversation, "title": "Rota"})
    await bob.wait_for("conversation:updated")

    again = await alice.call("conversation:update",
                             {"conversationId": conversation, "title": "Rota"})

    assert again["ok"] and again["changed"] is False
    # a send after it arrives first: nothing was emitted for the repeat
    await alice.call("message:send", {"conversationId": conversation, "text": "x",
                                      "messageId": "m1"})
    await bob.wait_for("message:new")
    assert len(bob.received("conversation:updated")) == 1


async def test_a_non_member_or_a_bad_title_is_refused_and_changes_nothing(
    server: RunningServer,
) -> None:
    conversation, (alice,) = await room(server, 1)
    mallory = await server.client(9, "mallory")

    refused = await mallory.call("conversation:update",
                                 {"conversationId": conversation, "title": "mine"})
    blank = await alice.call("conversation:update", {"conversationId": conversation,
                                                     "title": "   "})
    missing = await alice.call("conversation:update", {"conversationId": conversation})
    too_long = await alice.call("conversation:update", {"conversationId": conversation,
                                                        "title": "x" * 256})

    assert refused["error"]["code"] == "FORBIDDEN"
    assert [r["error"]["code"] for r in (blank, missing, too_long)] == ["INVALID_PAYLOAD"] * 3
    assert await storage(server).conversations.conversation_title(conversation) == "test"


async def test_rest_patch_renames_as_the_socket_does_and_the_sockets_hear_it(
    rest: Rest,
) -> None:
    server = rest.server
    conversation, (alice, _bob) = await room(server, 1, 2)

    reply = await rest.request("PATCH", f"/api/messenger/conversations/{conversation}",
                               user=2, json={"title": "Deliveries"})

    assert reply.status == 200
    assert reply.body == {"conversationId": conversation, "title": "Deliveries", "changed": True}
    [updated] = await alice.wait_for("conversation:updated")
    assert updated == {"conversationId": conversation, "title": "Deliveries", "updatedBy": 2}
    listed = await rest.get("/conversations", user=1)
    assert [c["title"] for c in listed.body["conversations"]] == ["Deliveries"]


async def test_rest_patch_refusals_carry_the_sockets_codes(rest: Rest) -> None:
    server = rest.server
    conversation = await server.conversation(1)
    path = f"/api/messenger/conversations/{conversation}"

    outsider = await rest.request("PATCH", path, user=9, json={"title": "x"})
    blank = await rest.request("PATCH", path, user=1, json={"title": ""})
    unsigned = await rest.request("PATCH", path, json={"title": "x"})

    assert (outsider.status, outsider.code) == (403, "FORBIDDEN")
    assert (blank.status, blank.code) == (400, "INVALID_PAYLOAD")
    assert (unsigned.status, unsigned.code) == (401, "UNAUTHENTICATED")
    assert await storage(server).conversations.conversation_title(conversation) == "test"


async def test_a_members_long_poll_carries_the_rename(rest: Rest) -> None:
    server = rest.server
    conversation = await server.conversation(1, 2)
    start = await rest.poll(2)
    cursor = start.body["cursor"]

    await rest.request("PATCH", f"/api/messenger/conversations/{conversation}",
                       user=1, json={"title": "Back office"})
    answer = await rest.poll(2, cursor)

    assert answer.status == 200
    assert answer.body["events"] == [{"event": "conversation:updated", "data": {
        "conversationId": conversation, "title": "Back office", "updatedBy": 1}}]
