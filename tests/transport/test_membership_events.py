"""`conversation:added` and `conversation:removed` through the real server, on both
backends: a user's own sockets hear that they became (REST create, server API add)
or stopped being (server API remove) a member, and their long-poll carries both."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp

from tests.support import ChatClient, RunningServer
from tests.transport.conftest import room
from tests.transport.rest_support import SERVER_API_KEY as KEY
from tests.transport.rest_support import Rest
from tests.transport.test_rest_poll import assert_still_held, start_poll


async def create(rest: Rest, creator: int, title: str, members: list[int]) -> int:
    reply = await rest.post("/conversations", user=creator,
                            json={"title": title, "members": members})
    assert reply.status == 201, reply.body
    conversation: int = reply.body["id"]
    return conversation


async def nothing_more(client: ChatClient, event: str, count: int) -> None:
    """The client got `count` of `event` and no more. The server emits before it
    answers the REST request that caused it, and one socket's packets arrive in
    order: the answer to a call made now comes after anything emitted before."""
    await client.call("presence:request")  # (answered, if only UNAUTHENTICATED)
    assert len(client.received(event)) == count, client.received(event)


async def test_a_conversation_created_over_rest_reaches_every_members_sockets(
    keyed: Rest,
) -> None:
    server = keyed.server
    creator = await server.client(1)
    bob_tab, bob_phone = await server.client(2), await server.client(2)
    outsider = await server.client(3)
    unauthenticated = await server.client()
    conversation = await create(keyed, 1, "Project X", [2])
    expected = {"conversationId": conversation, "title": "Project X", "members": [1, 2],
                "addedBy": 1}
    for client in (creator, bob_tab, bob_phone):  # the creator's other tabs too
        [told] = await client.wait_for("conversation:added")
        assert told == expected
    for client in (outsider, unauthenticated):
        await nothing_more(client, "conversation:added", 0)
    # Told once each, and the new member may join at once.
    await nothing_more(bob_tab, "conversation:added", 1)
    assert (await bob_tab.call("conversation:join", {"conversationId": conversation}))["ok"]


async def test_a_socket_authenticated_after_connecting_hears_it_under_contacts_scope(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
    session: aiohttp.ClientSession,
) -> None:
    """The per-user room is entered on every authentication, whatever PRESENCE_SCOPE."""
    async with make_server(PRESENCE_SCOPE="contacts") as server:
        late = await server.client()
        reply = await late.call("authenticate", {"token": server.token(2)})
        assert reply["ok"], reply
        conversation = await create(Rest(server, session), 1, "", [2])
        [told] = await late.wait_for("conversation:added")
        assert told == {"conversationId": conversation, "title": "", "members": [1, 2],
                        "addedBy": 1}


async def test_the_server_api_adding_a_member_tells_their_sockets_with_added_by_null(
    keyed: Rest,
) -> None:
    server = keyed.server
    conversation, (alice,) = await room(server, 1)
    bob = await server.client(2)
    path = f"/conversations/{conversation}/members"
    assert (await keyed.server_call("POST", path, KEY, {"userId": 2})).body["changed"]
    [told] = await bob.wait_for("conversation:added")
    assert told == {"conversationId": conversation, "title": "test", "members": [1, 2],
                    "addedBy": None}
    # The room hears member:added; only the added user hears conversation:added.
    await alice.wait_for("member:added")
    await nothing_more(alice, "conversation:added", 0)
    # Adding a member again changes nothing and says nothing.
    assert not (await keyed.server_call("POST", path, KEY, {"userId": 2})).body["changed"]
    await nothing_more(bob, "conversation:added", 1)


async def test_the_server_api_removing_a_member_tells_their_sockets_and_takes_them_out(
    keyed: Rest,
) -> None:
    server = keyed.server
    conversation, (alice, bob) = await room(server, 1, 2)
    bob_idle = await server.client(2)  # a socket of bob's that never joined the room
    removed = await keyed.server_call("DELETE", f"/conversations/{conversation}/members/2", KEY)
    assert removed.body["changed"] is True
    for client in (bob, bob_idle):
        [told] = await client.wait_for("conversation:removed")
        assert told == {"conversationId": conversation, "removedBy": None}
    # After member:removed, which the room (bob included) hears first.
    assert bob.sequence.index("member:removed") < bob.sequence.index("conversation:removed")
    await server.wait_until(
        lambda: not server.chat.fanout.in_room(bob.sio.get_sid(), f"conversation:{conversation}")
    )
    await nothing_more(alice, "conversation:removed", 0)


async def test_the_long_poll_carries_both_events_to_the_user_they_concern(keyed: Rest) -> None:
    cursors = {user: (await keyed.poll(user)).body["cursor"] for user in (1, 2, 3)}

    async def events(user: int) -> list[tuple[str, Any]]:
        body = (await keyed.poll(user, cursors[user])).body
        cursors[user] = body["cursor"]
        return [(e["event"], e["data"]) for e in body["events"]]

    conversation = await create(keyed, 1, "Poll me", [2])
    created = {"conversationId": conversation, "title": "Poll me", "members": [1, 2],
               "addedBy": 1}
    assert await events(2) == [("conversation:added", created)]
    await keyed.server_call("POST", f"/conversations/{conversation}/members", KEY, {"userId": 3})
    await keyed.server_call("DELETE", f"/conversations/{conversation}/members/2", KEY)

    assert await events(2) == [
        ("conversation:removed", {"conversationId": conversation, "removedBy": None})]
    # Members as they are when the poll reads them: bob has gone by then.
    assert await events(3) == [
        ("conversation:added", {"conversationId": conversation, "title": "Poll me",
                                "members": [1, 3], "addedBy": None}),
    ]
    # Nobody hears of another user's membership through the poll.
    assert await events(1) == [
        ("conversation:added", {**created, "members": [1, 3]}),
    ]


async def test_a_waiting_long_poll_is_woken_when_its_user_is_added_or_removed(
    keyed: Rest,
) -> None:
    """The server's clock is a ManualClock: the recheck timer never fires, so an
    answer means the delivery woke the poll (a user with no socket at all)."""
    cursor = (await keyed.poll(2)).body["cursor"]
    waiting = await start_poll(keyed, 2, cursor)
    await assert_still_held(keyed.server, waiting)
    conversation = await create(keyed, 1, "Wake up", [2])
    body = (await asyncio.wait_for(waiting, 5)).body
    assert [(e["event"], e["data"]["conversationId"]) for e in body["events"]] == [
        ("conversation:added", conversation)]

    waiting = await start_poll(keyed, 2, body["cursor"])
    await assert_still_held(keyed.server, waiting)
    await keyed.server_call("DELETE", f"/conversations/{conversation}/members/2", KEY)
    body = (await asyncio.wait_for(waiting, 5)).body
    assert [e["event"] for e in body["events"]] == ["conversation:removed"]
