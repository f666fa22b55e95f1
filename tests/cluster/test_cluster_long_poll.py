"""The REST long-poll across nodes: a poller on one node hears the typing of a
socket on another, and is online for the sockets of the other node."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.cluster.conftest import TYPING_MS, Cluster, Node

POLL_S = 30.0  # bounds a hang only: the hold time (25 s) answers an idle poll


async def poll(
    http: aiohttp.ClientSession, cluster: Cluster, node: Node, user: int,
    cursor: str = "", live: str = "",
) -> dict[str, Any]:
    async with http.get(
        f"{node.url}/api/messenger/poll", params={"cursor": cursor, "live": live},
        headers={"Authorization": f"Bearer {cluster.token(user)}"},
        timeout=aiohttp.ClientTimeout(total=POLL_S),
    ) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def test_a_poller_on_b_hears_the_typing_of_a_socket_on_a_and_is_online_there(
    pair: Cluster,
) -> None:
    a, b = pair.nodes
    conversation = await pair.conversation(1, 2)
    alice = await pair.client(a, 1)
    assert (await alice.call("conversation:join", {"conversationId": conversation}))["ok"]
    async with aiohttp.ClientSession() as http:
        first = await poll(http, pair, b, 2)
        # Bob only polls, on B: Alice's socket on A is told he came online.
        [online] = await alice.wait_for("user:online", lambda data: data["userId"] == 2)
        assert online == {"userId": 2, "name": "user2"}
        listed = await alice.call("presence:request", {})
        assert 2 in {user["userId"] for user in listed["users"]}

        waiting = asyncio.create_task(poll(http, pair, b, 2, first["cursor"], first["live"]))
        await asyncio.sleep(0.5)  # (a typing before the poll waits is buffered anyway)
        assert (await alice.call("typing:start", {"conversationId": conversation}))["ok"]
        answer = await asyncio.wait_for(waiting, 5)
        typing = {"userId": 1, "conversationId": conversation}
        assert answer["events"] == [
            {"event": "typing:indicator", "data": {**typing, "isTyping": True}}]
        # It ends by itself on A's timer; B's poller hears that too.
        ended = await asyncio.wait_for(
            poll(http, pair, b, 2, answer["cursor"], answer["live"]), TYPING_MS / 1000 + 5)
        assert ended["events"] == [
            {"event": "typing:indicator", "data": {**typing, "isTyping": False}}]
