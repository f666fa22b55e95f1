"""Conversations their members run, through the real server on both databases:
member:add, member:remove (leaving for good) and member:role on the socket and
over REST, what the others and the user's own sockets hear, and each refusal
changing nothing (docs/protocol.md, Roles)."""

from __future__ import annotations

from ecigdis_ws.domain import ChangedBy, UserId
from tests.support import ChatClient, RunningServer
from tests.transport.rest_support import Rest

OWNER, MEMBER, NEWCOMER = 1, 2, 3


async def owned(server: RunningServer, *users: int) -> tuple[int, list[ChatClient]]:
    """A conversation created by OWNER (its owner) with `users`, each connected and
    joined (OWNER first)."""
    conversation = await server.chat.storage.conversations.create_conversation(
        "team", [OWNER, *users], int(server.chat.clock.now() * 1000), ChangedBy(OWNER),
    )
    clients = []
    for user in (OWNER, *users):
        client = await server.client(user, f"user{user}")
        assert (await client.call("conversation:join", {"conversationId": conversation}))["ok"]
        clients.append(client)
    return conversation, clients


async def roles(server: RunningServer, conversation: int) -> dict[UserId, str]:
    members = await server.chat.storage.conversations.members(conversation)
    return {member.user_id: member.role for member in members}


async def test_the_join_lists_every_member_with_name_and_role(server: RunningServer) -> None:
    conversation, (owner, _member) = await owned(server, MEMBER)

    joined = await owner.call("conversation:join", {"conversationId": conversation})

    assert joined["members"] == [{"userId": OWNER, "name": "user1", "role": "owner"},
                                 {"userId": MEMBER, "name": "user2", "role": "member"}]


async def test_an_owner_adds_over_the_socket_and_the_room_and_the_newcomer_hear_it(
    server: RunningServer,
) -> None:
    conversation, (owner, member) = await owned(server, MEMBER)
    newcomer = await server.client(NEWCOMER, "user3")

    reply = await owner.call("member:add", {"conversationId": conversation,
                                            "userId": NEWCOMER})

    assert reply == {"ok": True, "conversationId": conversation, "userId": NEWCOMER,
                     "changed": True}
    [added] = await member.wait_for("member:added")
    assert added == {"userId": NEWCOMER, "conversationId": conversation, "addedBy": OWNER}
    [told] = await newcomer.wait_for("conversation:added")
    assert told["addedBy"] == OWNER and told["members"] == [OWNER, MEMBER, NEWCOMER]
    assert (await newcomer.call("conversation:join", {"conversationId": conversation}))["ok"]


async def test_a_member_cannot_add_remove_or_set_roles_and_nothing_changes(
    server: RunningServer,
) -> None:
    conversation, (_owner, member, _newcomer) = await owned(server, MEMBER, NEWCOMER)
    before = await roles(server, conversation)

    answers = [
        await member.call("member:add", {"conversationId": conversation, "userId": 7}),
        await member.call("member:remove", {"conversationId": conversation,
                                            "userId": NEWCOMER}),
        await member.call("member:role", {"conversationId": conversation, "userId": MEMBER,
                                          "role": "admin"}),
    ]

    assert [answer["error"]["code"] for answer in answers] == ["FORBIDDEN"] * 3
    assert await roles(server, conversation) == before
    bad_role = await member.call("member:role", {"conversationId": conversation,
                                                 "userId": MEMBER, "role": "king"})
    assert bad_role["error"]["code"] == "INVALID_PAYLOAD"


async def test_leaving_for_good_over_rest_tells_the_room_and_the_users_other_sockets(
    rest: Rest,
) -> None:
    server = rest.server
    conversation, (owner, member) = await owned(server, MEMBER)
    other_tab = await server.client(MEMBER, "user2")

    reply = await rest.request(
        "DELETE", f"/api/messenger/conversations/{conversation}/members/{MEMBER}", user=MEMBER)

    assert reply.status == 200 and reply.body["changed"] is True
    for client in (owner, member):
        [removed] = await client.wait_for("member:removed")
        assert removed == {"userId": MEMBER, "conversationId": conversation,
                           "removedBy": MEMBER}
    [gone] = await other_tab.wait_for("conversation:removed")
    assert gone == {"conversationId": conversation, "removedBy": MEMBER}
    send = await member.call("message:send", {"conversationId": conversation,
                                              "text": "back?", "messageId": "after"})
    assert send["error"]["code"] == "FORBIDDEN"


async def test_the_last_owner_leaving_hands_the_role_on_and_the_room_hears_it(
    rest: Rest,
) -> None:
    server = rest.server
    conversation, (owner, member) = await owned(server, MEMBER)
    patch = await rest.request(
        "PATCH", f"/api/messenger/conversations/{conversation}/members/{OWNER}", user=OWNER,
        json={"role": "member"})
    assert patch.status == 409 and patch.body["error"]["code"] == "CONFLICT"

    left = await owner.call("member:remove", {"conversationId": conversation, "userId": OWNER})

    assert left["ok"] and left["changed"]
    [updated] = await member.wait_for("member:updated")
    assert updated == {"conversationId": conversation, "userId": MEMBER, "role": "owner",
                       "updatedBy": OWNER}
    assert await roles(server, conversation) == {MEMBER: "owner"}


async def test_rest_adds_and_sets_roles_as_the_socket_does(rest: Rest) -> None:
    server = rest.server
    conversation, (_owner, member) = await owned(server, MEMBER)
    base = f"/api/messenger/conversations/{conversation}/members"

    added = await rest.request("POST", base, user=OWNER, json={"userId": NEWCOMER})
    promoted = await rest.request("PATCH", f"{base}/{NEWCOMER}", user=OWNER,
                                  json={"role": "admin"})
    refused = await rest.request("POST", base, user=MEMBER, json={"userId": 8})

    assert added.status == 200 and added.body["changed"] is True
    assert promoted.body == {"conversationId": conversation, "userId": NEWCOMER,
                             "role": "admin", "changed": True}
    assert refused.status == 403
    [updated] = await member.wait_for("member:updated")
    assert updated["userId"] == NEWCOMER and updated["role"] == "admin"
    assert await roles(server, conversation) == {OWNER: "owner", MEMBER: "member",
                                                 NEWCOMER: "admin"}
