"""`conversation:added` / `conversation:removed` across real nodes: a user connected
to node B hears being added and removed through node A's REST API and server API,
and a long-poll held on node B is answered."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.cluster.conftest import Cluster, Node

KEY = "cluster-main-site-key-0123456789abcdef0123"
WAIT_S = 5.0


async def call(
    node: Node, method: str, path: str, *, token: str | None = None, json: Any = None,
) -> tuple[int, Any]:
    headers = {"X-API-Key": KEY} if token is None else {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http, http.request(
        method, node.url + path, json=json, headers=headers,
        timeout=aiohttp.ClientTimeout(total=WAIT_S * 2),
    ) as response:
        return response.status, await response.json()


async def test_a_user_on_node_b_hears_being_added_and_removed_on_node_a(
    cluster: Cluster,
) -> None:
    node_a, node_b = cluster.start("A", "B", API_KEY=KEY)
    bob = await cluster.client(node_b, 2)
    alice_on_b = await cluster.client(node_b, 1)

    # Created over REST on node A: both members' sockets on node B hear it.
    status, created = await call(node_a, "POST", "/api/messenger/conversations",
                                 token=cluster.token(1), json={"title": "A-side", "members": [2]})
    assert status == 201, created
    conversation = created["id"]
    told = {"conversationId": conversation, "title": "A-side", "members": [1, 2], "addedBy": 1}
    for client in (bob, alice_on_b):
        assert (await client.wait_for("conversation:added", within=WAIT_S)) == [told]

    # Removed, then added again, by the server API on node A.
    path = f"/api/server/conversations/{conversation}/members"
    status, _ = await call(node_a, "DELETE", f"{path}/2")
    assert status == 200
    [removed] = await bob.wait_for("conversation:removed", within=WAIT_S)
    assert removed == {"conversationId": conversation, "removedBy": None}
    status, _ = await call(node_a, "POST", path, json={"userId": 2})
    assert status == 200
    [_, again] = await bob.wait_for("conversation:added", count=2, within=WAIT_S)
    assert again == {"conversationId": conversation, "title": "A-side", "members": [1, 2],
                     "addedBy": None}
    # Only bob's membership changed: alice heard of it in the room, if at all.
    assert alice_on_b.received("conversation:removed") == []


async def test_a_long_poll_on_node_b_is_answered_when_node_a_adds_its_user(
    cluster: Cluster,
) -> None:
    node_a, node_b = cluster.start("A", "B", API_KEY=KEY)
    token = cluster.token(2)
    status, first = await call(node_b, "GET", "/api/messenger/poll", token=token)
    assert status == 200
    poll = asyncio.create_task(call(
        node_b, "GET", f"/api/messenger/poll?cursor={first['cursor']}", token=token))
    await asyncio.sleep(0.3)  # (held: nothing to answer yet)
    assert not poll.done()
    conversation = await cluster.conversation(1)
    status, _ = await call(node_a, "POST", f"/api/server/conversations/{conversation}/members",
                           json={"userId": 2})
    assert status == 200
    status, answer = await asyncio.wait_for(poll, WAIT_S)
    assert status == 200
    assert [(e["event"], e["data"]) for e in answer["events"]] == [
        ("conversation:added", {"conversationId": conversation, "title": "cluster",
                                "members": [1, 2], "addedBy": None})]


async def test_a_rename_and_a_role_on_node_a_reach_members_on_node_b(cluster: Cluster) -> None:
    """conversation:updated goes to every member's sockets, joined or not, on every
    node (the conversation list follows it); member:updated to the room."""
    node_a, node_b = cluster.start("A", "B", API_KEY=KEY)
    bob_listing = await cluster.client(node_b, 2)  # in no room: a conversation list
    status, created = await call(node_a, "POST", "/api/messenger/conversations",
                                 token=cluster.token(1), json={"title": "old", "members": [2, 3]})
    assert status == 201, created
    conversation = created["id"]
    carol_in_room = await cluster.client(node_b, 3)
    assert (await carol_in_room.call("conversation:join", {"conversationId": conversation}))["ok"]

    status, renamed = await call(node_a, "PATCH", f"/api/messenger/conversations/{conversation}",
                                 token=cluster.token(1), json={"title": "new"})
    assert status == 200 and renamed["changed"], renamed
    told = {"conversationId": conversation, "title": "new", "updatedBy": 1}
    for client in (bob_listing, carol_in_room):
        assert (await client.wait_for("conversation:updated", within=WAIT_S)) == [told]

    status, _ = await call(node_a, "PATCH",
                           f"/api/messenger/conversations/{conversation}/members/3",
                           token=cluster.token(1), json={"role": "admin"})
    assert status == 200
    [updated] = await carol_in_room.wait_for("member:updated", within=WAIT_S)
    assert updated == {"conversationId": conversation, "userId": 3, "role": "admin",
                       "updatedBy": 1}
