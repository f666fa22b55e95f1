"""Messages after they are sent, across two real nodes over one Redis: an edit, a
pin and a deletion made on node A reach a member joined on node B live, and a
long-poll held on node B is woken by each; a member away meanwhile catches them,
and a rename, with one cursor on either node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest_asyncio

from tests.cluster.conftest import Cluster, cluster_on

WAIT_S = 5.0


@pytest_asyncio.fixture
async def standalone(tmp_path: Path, shared_redis_url: str) -> AsyncIterator[Cluster]:
    """Two nodes over the shared Redis (the change events ride the fan-out as every
    other event does; the Redis Cluster variant adds nothing to them)."""
    async with cluster_on(tmp_path, shared_redis_url) as running:
        running.start("A", "B")
        yield running


async def poll(node_url: str, token: str, cursor: str | None = None) -> dict[str, object]:
    query = "" if cursor is None else f"?cursor={cursor}"
    async with aiohttp.ClientSession() as http, http.get(
        f"{node_url}/api/messenger/poll{query}", headers={"Authorization": f"Bearer {token}"},
        timeout=aiohttp.ClientTimeout(total=WAIT_S * 2),
    ) as response:
        assert response.status == 200
        answer: dict[str, object] = await response.json()
        return answer


async def test_changes_on_node_a_reach_a_member_on_node_b_live(standalone: Cluster) -> None:
    node_a, node_b = standalone.nodes
    conversation = await standalone.conversation(1, 2)  # a pair: either member pins
    alice = await standalone.client(node_a, 1)
    bob = await standalone.client(node_b, 2)
    for client in (alice, bob):
        assert (await client.call("conversation:join", {"conversationId": conversation}))["ok"]
    ack = await alice.call("message:send", {"conversationId": conversation,
                                            "text": "see you at 9", "messageId": "c-1"})
    assert ack["ok"], ack
    message = ack["id"]
    await bob.wait_for("message:new", within=WAIT_S)
    token = standalone.token(2)  # bob's, for the long-poll on node B
    cursor = str((await poll(node_b.url, token))["cursor"])
    steps = [
        ("message:edit", {"text": "see you at 10"}, "message:updated"),
        ("message:pin", {}, "message:pinned"),
        ("message:delete", {}, "message:deleted"),
    ]

    for operation, fields, told in steps:
        held = asyncio.create_task(poll(node_b.url, token, cursor))
        await asyncio.sleep(0.3)  # (held on node B: nothing to answer yet)
        assert not held.done()
        reply = await alice.call(operation, {"conversationId": conversation, "id": message,
                                             **fields})
        assert reply["ok"], reply

        [live] = await bob.wait_for(told, within=WAIT_S)
        answer = await asyncio.wait_for(held, WAIT_S)

        assert live["id"] == message
        assert answer["events"] == [{"event": told, "data": live}]
        cursor = str(answer["cursor"])

    assert bob.received("message:updated")[0]["text"] == "see you at 10"
    assert bob.received("message:deleted")[0]["deletedBy"] == 1
    assert alice.received("message:updated") == []  # the acting socket has its ack


async def test_a_member_away_catches_an_edit_a_pin_a_rename_and_a_deletion_with_one_cursor(
    standalone: Cluster,
) -> None:
    """Bob leaves node B with the cursor of his join; on node A Alice edits, pins,
    renames and deletes meanwhile. Back on node A (the other node) his rejoin with
    that cursor replays all four, oldest first, and a long-poll on node B from the
    same cursor answers the same four: one cursor for the socket and the long-poll,
    whichever node wrote the changes and whichever node is asked."""
    node_a, node_b = standalone.nodes
    conversation = await standalone.conversation(1, 2)  # a pair: either member pins, renames
    alice = await standalone.client(node_a, 1)
    bob = await standalone.client(node_b, 2)
    for client in (alice, bob):
        assert (await client.call("conversation:join", {"conversationId": conversation}))["ok"]
    sent = []
    for number, text in enumerate(("shift swap?", "call me")):
        ack = await alice.call("message:send", {"conversationId": conversation, "text": text,
                                                "messageId": f"away-{number}"})
        assert ack["ok"], ack
        sent.append(ack["id"])
    await bob.wait_for("message:new", count=2, within=WAIT_S)
    joined = await bob.call("conversation:join", {"conversationId": conversation})
    cursor = joined["cursor"]
    await bob.close()

    edited, removed = sent
    for operation, fields in (
        ("message:edit", {"id": edited, "text": "shift swap on Friday?"}),
        ("message:pin", {"id": edited}),
        ("conversation:update", {"title": "Friday cover"}),
        ("message:delete", {"id": removed}),
    ):
        reply = await alice.call(operation, {"conversationId": conversation, **fields})
        assert reply["ok"], (operation, reply)

    back = await standalone.client(node_a, 2)
    rejoined = await back.call("conversation:join",
                               {"conversationId": conversation, "cursor": cursor})
    assert rejoined["ok"], rejoined
    await back.wait_for("message:deleted", within=WAIT_S)
    changes = ("message:updated", "message:pinned", "conversation:updated", "message:deleted")
    assert [name for name in back.sequence if name in (*changes, "message:new")] == list(changes)
    assert back.received("message:updated")[0]["text"] == "shift swap on Friday?"
    assert back.received("message:pinned")[0]["id"] == edited
    assert back.received("conversation:updated")[0]["title"] == "Friday cover"
    assert back.received("message:deleted")[0]["id"] == removed

    answer = await poll(node_b.url, standalone.token(2), cursor)
    events = answer["events"]
    assert isinstance(events, list)
    assert [event["event"] for event in events] == list(changes)
