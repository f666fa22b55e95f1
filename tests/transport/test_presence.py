"""user:online / user:offline with the grace period, and presence:request."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest

from tests.support import RunningServer

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]


async def test_first_connection_announces_user_online(server: RunningServer) -> None:
    alice = await server.client(1, "Alice")
    await server.client(2, "Bob")
    assert await alice.wait_for("user:online") == [{"userId": 2, "name": "Bob"}]
    await server.client(2, "Bob")  # a second tab is not a new arrival
    await server.client(3, "Cy")
    online = await alice.wait_for("user:online", count=2)
    assert [e["userId"] for e in online] == [2, 3]


async def test_unauthenticated_sockets_hear_no_presence(server: RunningServer) -> None:
    anonymous = await server.client()
    alice = await server.client(1, "Alice")
    await server.client(2, "Bob")
    await alice.wait_for("user:online")
    assert anonymous.received("user:online") == []


async def test_last_connection_closing_announces_offline_after_grace(
    server: RunningServer,
) -> None:
    alice = await server.client(1, "Alice")
    bob = await server.client(2, "Bob")
    bob_tab = await server.client(2, "Bob")
    await server.disconnect(bob)
    await server.advance(5)
    assert alice.received("user:offline") == []  # Bob still has a tab open
    await server.disconnect(bob_tab)
    await server.advance(1.9)
    assert alice.received("user:offline") == []
    await server.advance(0.2)
    [offline] = await alice.wait_for("user:offline")
    assert offline == {"userId": 2, "lastSeen": "2027-01-15T08:00:05.000Z"}
    assert not server.chat.presence.is_online_here(2)


async def test_reconnect_within_grace_does_not_flap(server: RunningServer) -> None:
    alice = await server.client(1, "Alice")
    bob = await server.client(2, "Bob")
    await alice.wait_for("user:online")
    await server.disconnect(bob)
    await server.advance(1)
    await server.client(2, "Bob")  # a page reload
    await server.advance(5)
    await server.client(3, "Cy")
    await alice.wait_for("user:online", count=2)
    assert alice.received("user:offline") == []
    assert [e["userId"] for e in alice.received("user:online")] == [2, 3]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_presence_request_lists_everyone_online(
    server: RunningServer, transport: str
) -> None:
    alice = await server.client(1, "Alice", transports=[transport])
    await server.client(2, "Bob")
    reply = await alice.call("presence:request")
    assert reply["ok"] is True and reply["count"] == 2
    assert sorted(reply["users"], key=lambda u: u["userId"]) == [
        {"userId": 1, "name": "Alice"}, {"userId": 2, "name": "Bob"}
    ]
    assert reply["truncated"] is False
    # Answered once: the ack was asked for, so no presence:list event (which
    # would have arrived before the ack) repeats it.
    assert alice.received("presence:list") == []


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_presence_request_without_an_ack_is_answered_with_presence_list(
    server: RunningServer, transport: str
) -> None:
    alice = await server.client(1, "Alice", transports=[transport])
    await alice.sio.emit("presence:request")
    [listing] = await alice.wait_for("presence:list")
    assert listing == {
        "users": [{"userId": 1, "name": "Alice"}], "count": 1, "truncated": False
    }


async def test_presence_request_for_a_conversation_lists_its_members(
    server: RunningServer,
) -> None:
    conversation = await server.conversation(1, 2)
    alice = await server.client(1, "Alice")
    await server.client(2, "Bob")
    await server.client(3, "Cy")
    reply = await alice.call("presence:request", {"conversationId": conversation})
    assert sorted(u["userId"] for u in reply["users"]) == [1, 2] and reply["count"] == 2


async def test_presence_request_for_a_foreign_conversation_is_forbidden(
    server: RunningServer,
) -> None:
    conversation = await server.conversation(1)
    mallory = await server.client(9)
    reply = await mallory.call("presence:request", {"conversationId": conversation})
    assert reply["error"]["code"] == "FORBIDDEN"
    assert mallory.received("presence:list") == []


async def test_offline_records_last_seen(server: RunningServer) -> None:
    await server.client(1, "Alice")
    bob = await server.client(2, "Bob")
    await server.disconnect(bob)
    await server.advance(2.5)
    engine = server.chat.storage.engine  # type: ignore[attr-defined]
    table = f"{server.settings.db_table_prefix}users"
    row = await engine.fetch_one(f"SELECT last_seen_ms FROM {table} WHERE id = '2'")
    assert row == (int(server.clock.now() * 1000) - 2500,)


async def test_contacts_scope_announces_arrivals_and_departures_only_to_contacts(
    make_server: ServerFactory,
) -> None:
    async with make_server(PRESENCE_SCOPE="contacts") as server:
        await server.conversation(1, 2)  # Alice and Bob share a conversation; Cy shares none
        alice = await server.client(1, "Alice")
        stranger = await server.client(3, "Cy")
        bob = await server.client(2, "Bob")
        await server.client(4, "Dee")  # nobody's contact: announced to no one
        assert await alice.wait_for("user:online") == [{"userId": 2, "name": "Bob"}]
        await server.disconnect(bob)
        await server.advance(2.1)
        [offline] = await alice.wait_for("user:offline")
        assert offline["userId"] == 2
        # One more contact arrival, so the stranger's silence is not just early.
        await server.conversation(1, 3, title="later")
        await server.client(5, "Eve")
        await server.disconnect(stranger)
        await server.advance(2.1)
        [late] = await alice.wait_for("user:offline", lambda e: e["userId"] == 3)
        assert late["userId"] == 3
        assert stranger.received("user:online") == []
        assert stranger.received("user:offline") == []
        assert [e["userId"] for e in alice.received("user:online")] == [2]


async def test_contacts_scope_lists_only_contacts_on_request_over_socket_and_rest(
    make_server: ServerFactory,
) -> None:
    """presence:request (and GET /presence) without a conversation tells no more
    than user:online does under contacts: the asker and the online users who share
    a conversation with them. Before, it listed everyone online."""
    async with make_server(PRESENCE_SCOPE="contacts") as server, aiohttp.ClientSession() as http:
        await server.conversation(1, 2)
        await server.conversation(2, 5, title="Bob and Eve")  # Eve: Bob's contact only
        alice = await server.client(1, "Alice")
        bob = await server.client(2, "Bob")
        await server.client(5, "Eve")
        mallory = await server.client(9, "Mallory")  # nobody's contact

        async def rest_presence(user: int) -> set[int]:
            async with http.get(server.url + "/api/messenger/presence",
                                headers={"Authorization": f"Bearer {server.token(user)}"}) as reply:
                assert reply.status == 200
                return {u["userId"] for u in (await reply.json())["users"]}

        for user, client, seen in ((1, alice, {1, 2}), (2, bob, {1, 2, 5}), (9, mallory, {9})):
            listing = await client.call("presence:request", {})
            assert {u["userId"] for u in listing["users"]} == seen, user
            assert listing["count"] == len(seen) and listing["truncated"] is False
            assert await rest_presence(user) == seen, user
        # within a conversation nothing changes: its online members
        conversation = await server.conversation(1, 9, title="later")
        listing = await alice.call("presence:request", {"conversationId": conversation})
        assert {u["userId"] for u in listing["users"]} == {1, 9}
        # and the new conversation made them contacts
        assert await rest_presence(9) == {1, 9}


async def test_global_scope_lists_everyone_online_on_request(server: RunningServer) -> None:
    alice = await server.client(1, "Alice")
    await server.client(2, "Bob")  # no conversation in common
    listing = await alice.call("presence:request")
    assert sorted(user["userId"] for user in listing["users"]) == [1, 2]
