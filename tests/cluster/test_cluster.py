"""Several real server processes sharing one database and one Redis, with clients
on different nodes: what one node's sockets cause reaches the others' with the
same exclusion rules, presence is announced once for the whole cluster, a killed
node's users and typing end, Redis may go away and come back, and nothing but a
node's signed message on the fan-out channel is ever delivered. When a node hears
the channel again after losing it, it closes its clients' transports, and they
rejoin with `since` as ChatManager does.

Absence is checked after a barrier: a message sent from the node that would have
sent the unwanted event, and awaited at the receivers. A node publishes on one
connection, in order, and Redis delivers one channel in order, so by the time
the barrier arrives anything that node published before it has arrived too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis

from tests.cluster.conftest import (
    GRACE_MS,
    GRACES_ENDED,
    HEARTBEAT_S,
    NODE_KILL_TIMEOUT_S,
    POLL_S,
    TTL_MS,
    TYPING_MS,
    Cluster,
    Node,
    RedisServer,
    cluster_on,
    heartbeats,
    wait_until,
)
from tests.support import ChatClient, Disconnect, record_disconnects, transport_closed

WAIT_S = 5.0
# user:offline for a killed node's users: its lease (set at its last heartbeat)
# runs out after PRESENCE_TTL_MS, and a survivor's next heartbeat reaps it.
OFFLINE_AFTER_KILL_LIMIT_S = TTL_MS / 1000 + HEARTBEAT_S + 1.0
# typing ends on another node SWEEP_DELAY_MS (1 s) after it was due, on a 1 s sweep.
TYPING_END_LIMIT_S = TYPING_MS / 1000 + 2.0 + 0.5
# The listener retries at most every 2 s, with jitter up to 1.5 times that.
RECONNECT_LIMIT_S = 2.0 * 1.5 + 1.0
# Once it listens again a node renews its lease and closes its clients' transports.
RESYNC_LIMIT_S = RECONNECT_LIMIT_S + 0.5
# A Redis that came back empty has each node's presence entries back by its next
# heartbeat (or its resync, if sooner).
RESTORE_LIMIT_S = HEARTBEAT_S + 0.5
REDIS_DOWN_S = 3.0
# The outage's clients are closed by their nodes and reconnect: a grace period
# longer than that (GRACE_MS is shorter) keeps them from going offline and back.
OUTAGE_GRACE_MS = 3000
FORGED_LOG_LINE = "dropped a forged or malformed fan-out message"
DELIVERIES = "ecigdis_ws_deliveries_total"


# -- helpers -------------------------------------------------------------------------


async def joined(cluster: Cluster, node: Node, user_id: int, conversation: int) -> ChatClient:
    """A socket of `user_id` on `node`, in the room of `conversation`."""
    client = await cluster.client(node, user_id)
    reply = await client.call("conversation:join", {"conversationId": conversation})
    assert reply["ok"], reply
    return client


async def send(client: ChatClient, conversation: int, text: str) -> dict[str, Any]:
    message = {"conversationId": conversation, "text": text, "messageId": uuid.uuid4().hex}
    ack: dict[str, Any] = await client.call("message:send", message)
    assert ack["ok"] and ack["status"] == "sent", ack
    return ack


def with_text(text: str) -> Callable[[Any], bool]:
    return lambda message: message["text"] == text


def about(user_id: int) -> Callable[[Any], bool]:
    return lambda data: data["userId"] == user_id


def texts(client: ChatClient) -> list[str]:
    return [message["text"] for message in client.received("message:new")]


def forget(*clients: ChatClient) -> None:
    """Drop what the clients received so far."""
    for client in clients:
        client.events.clear()
        client.sequence.clear()


async def barrier(sender: ChatClient, conversation: int, *receivers: ChatClient) -> str:
    """Send a message and wait until every receiver has it (see the module docstring)."""
    text = f"barrier-{uuid.uuid4().hex}"
    await send(sender, conversation, text)
    for receiver in receivers:
        await receiver.wait_for("message:new", with_text(text))
    return text


def count(client: ChatClient, event: str, where: Callable[[Any], bool]) -> int:
    return sum(1 for data in client.received(event) if where(data))


def degraded(node: Node) -> bool:
    return node.health()[0] == 503


def logged(node: Node, line: str, times: int) -> bool:
    return node.log().count(line) >= times


async def elapsed_until(client: ChatClient, event: str, where: Callable[[Any], bool],
                        started: float, within: float) -> float:
    await client.wait_for(event, where, within=within)
    return time.monotonic() - started


# -- a. what a socket causes crosses nodes, never back to that socket ---------------------


async def test_a_message_reaches_members_and_the_senders_other_socket_on_another_node(
    pair: Cluster,
) -> None:
    a, b = pair.nodes
    conversation = await pair.conversation(1, 2, 3)
    alice_a = await joined(pair, a, 1, conversation)
    alice_b = await joined(pair, b, 1, conversation)
    bob_b = await joined(pair, b, 2, conversation)
    carol_a = await joined(pair, a, 3, conversation)

    ack = await send(alice_a, conversation, "hello")

    for client in (alice_b, bob_b, carol_a):
        [message] = await client.wait_for("message:new", with_text("hello"))
        assert message["id"] == ack["id"]
        assert message["userId"] == 1
        assert message["conversationId"] == conversation
    reply = await barrier(bob_b, conversation, alice_a)  # anything echoed back arrived first
    assert texts(alice_a) == [reply], "the sending socket got its own message"


async def test_deliveries_are_counted_on_the_node_that_writes_them(pair: Cluster) -> None:
    """ecigdis_ws_deliveries_total counted only on the emitting node, so a cluster's
    dashboards under-reported (issue 26's review): a message from node a to two
    members on node b is two deliveries on b, none on a."""
    a, b = pair.nodes
    conversation = await pair.conversation(1, 2, 3)
    alice_a = await joined(pair, a, 1, conversation)
    bob_b = await joined(pair, b, 2, conversation)
    carol_b = await joined(pair, b, 3, conversation)
    # What bob's and carol's arrival told alice (user:online, user:joined) crosses
    # from b on its own time and is counted on a when it lands: read before it,
    # the count on a moved after the send (seen in a loaded parallel run).
    for event in ("user:online", "user:joined"):
        await alice_a.wait_for(event, lambda data: data["userId"] in (2, 3), count=2)
    before_a, before_b = a.metric(DELIVERIES), b.metric(DELIVERIES)

    await send(alice_a, conversation, "counted where delivered")
    for client in (bob_b, carol_b):
        await client.wait_for("message:new", with_text("counted where delivered"))
    await b.metric_reaches(DELIVERIES, before_b + 2)
    assert b.metric(DELIVERIES) == before_b + 2
    assert a.metric(DELIVERIES) == before_a  # (the sender's own socket is skipped)


async def test_a_send_publishes_its_message_to_the_other_nodes_and_keeps_its_ack_local(
    pair: Cluster,
) -> None:
    """The ack and message:ack go to the sending socket, which only this node holds:
    publishing them would cost every other node a verify and decode for nothing."""
    a, b = pair.nodes
    conversation = await pair.conversation(1, 2)
    alice_a = await joined(pair, a, 1, conversation)
    bob_b = await joined(pair, b, 2, conversation)
    with pair.subscribe(pair.room_channel(f"conversation:{conversation}")) as listener:
        ack = await send(alice_a, conversation, "only this")
        await bob_b.wait_for("message:new", with_text("only this"))
        await alice_a.wait_for("message:ack", lambda data: data["id"] == ack["id"])
        published = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            raw = await asyncio.to_thread(listener.get_message, timeout=0.2)
            if raw is not None:
                published.append(json.loads(json.loads(raw["data"])["body"]))
    events = [m.get("event") for m in published if m.get("method") == "emit"]
    assert events.count("message:new") == 1, published
    assert "message:ack" not in events, published


async def test_a_burst_of_30_messages_from_one_socket_arrives_in_order_on_another_node(
    pair: Cluster,
) -> None:
    a, b = pair.nodes
    conversation = await pair.conversation(1, 2)
    alice_a = await joined(pair, a, 1, conversation)
    alice_b = await joined(pair, b, 1, conversation)
    bob_b = await joined(pair, b, 2, conversation)
    sent = [f"burst {n}" for n in range(30)]

    for n, text in enumerate(sent):
        await alice_a.sio.emit(
            "message:send", {"conversationId": conversation, "text": text, "messageId": f"b{n}"}
        )

    acks = await alice_a.wait_for("message:ack", count=30)
    assert [ack["status"] for ack in acks] == ["sent"] * 30
    for client in (bob_b, alice_b):
        received = await client.wait_for("message:new", count=30)
        assert [message["text"] for message in received] == sent
        ids = [message["id"] for message in received]
        assert ids == sorted(ids) and len(set(ids)) == 30


async def test_typing_start_and_stop_cross_nodes_but_not_to_the_typing_socket(
    pair: Cluster,
) -> None:
    a, b = pair.nodes
    conversation = await pair.conversation(1, 2)
    alice_a = await joined(pair, a, 1, conversation)
    alice_b = await joined(pair, b, 1, conversation)
    bob_b = await joined(pair, b, 2, conversation)
    typing = {"userId": 1, "conversationId": conversation}

    assert (await alice_a.call("typing:start", {"conversationId": conversation}))["ok"]
    for client in (bob_b, alice_b):
        await client.wait_for("typing:indicator", lambda data: data["isTyping"])
    assert (await alice_a.call("typing:stop", {"conversationId": conversation}))["ok"]
    for client in (bob_b, alice_b):
        await client.wait_for("typing:indicator", lambda data: not data["isTyping"])
        assert client.received("typing:indicator") == [
            {**typing, "isTyping": True}, {**typing, "isTyping": False}
        ]
    await barrier(bob_b, conversation, alice_a)
    assert alice_a.received("typing:indicator") == []


async def test_a_read_receipt_crosses_nodes_but_not_to_the_reading_socket(
    pair: Cluster,
) -> None:
    a, b = pair.nodes
    conversation = await pair.conversation(1, 2)
    alice_a = await joined(pair, a, 1, conversation)
    alice_b = await joined(pair, b, 1, conversation)
    bob_b = await joined(pair, b, 2, conversation)
    ack = await send(bob_b, conversation, "read me")
    await alice_a.wait_for("message:new", with_text("read me"))

    reply = await alice_a.call(
        "message:read", {"conversationId": conversation, "messageId": ack["id"]}
    )

    assert reply == {"ok": True, "advanced": True}
    for client in (bob_b, alice_b):
        [receipt] = await client.wait_for("message:read-receipt")
        assert (receipt["messageId"], receipt["userId"]) == (ack["id"], 1)
        assert receipt["conversationId"] == conversation
    await barrier(bob_b, conversation, alice_a)
    assert alice_a.received("message:read-receipt") == []


async def test_a_reaction_crosses_nodes_but_not_to_the_reacting_socket(pair: Cluster) -> None:
    a, b = pair.nodes
    conversation = await pair.conversation(1, 2)
    alice_a = await joined(pair, a, 1, conversation)
    alice_b = await joined(pair, b, 1, conversation)
    bob_b = await joined(pair, b, 2, conversation)
    ack = await send(bob_b, conversation, "react to me")
    react = {"conversationId": conversation, "messageId": ack["id"], "emoji": "👍"}

    assert (await alice_a.call("message:react", react))["action"] == "added"
    assert (await alice_a.call("message:react", react))["action"] == "removed"

    for client in (bob_b, alice_b):
        reactions = await client.wait_for("message:reaction", count=2)
        assert [(r["action"], r["userId"], r["emoji"]) for r in reactions] == [
            ("added", 1, "👍"), ("removed", 1, "👍")
        ]
    await barrier(bob_b, conversation, alice_a)
    assert alice_a.received("message:reaction") == []


async def test_joining_and_leaving_are_announced_across_nodes_but_not_to_that_socket(
    pair: Cluster,
) -> None:
    a, b = pair.nodes
    conversation = await pair.conversation(1, 2)
    bob_b = await joined(pair, b, 2, conversation)
    alice_b = await joined(pair, b, 1, conversation)
    alice_a = await pair.client(a, 1)
    forget(bob_b, alice_b)

    assert (await alice_a.call("conversation:join", {"conversationId": conversation}))["ok"]
    for client in (bob_b, alice_b):
        assert await client.wait_for("user:joined") == [
            {"userId": 1, "conversationId": conversation}
        ]
    assert (await alice_a.call("conversation:leave", {"conversationId": conversation}))["ok"]
    for client in (bob_b, alice_b):
        assert await client.wait_for("user:left") == [
            {"userId": 1, "conversationId": conversation}
        ]
    assert (await alice_a.call("conversation:join", {"conversationId": conversation}))["ok"]
    await barrier(bob_b, conversation, alice_a)
    assert alice_a.received("user:joined") == []
    assert alice_a.received("user:left") == []


# -- b. presence exactly once across nodes -----------------------------------------------


@dataclass
class TwoTabs:
    """User 1 with a tab on A and one on B; users 2 (on A) and 3 (on B) watching."""

    lobby: int
    tab_a: ChatClient
    tab_b: ChatClient
    watcher_a: ChatClient
    watcher_b: ChatClient

    @property
    def watchers(self) -> tuple[ChatClient, ChatClient]:
        return self.watcher_a, self.watcher_b


async def two_tabs(pair: Cluster) -> TwoTabs:
    a, b = pair.nodes
    lobby = await pair.conversation(1, 2, 3)
    watcher_a = await joined(pair, a, 2, lobby)
    watcher_b = await joined(pair, b, 3, lobby)
    tab_a = await joined(pair, a, 1, lobby)
    for watcher in (watcher_a, watcher_b):
        await watcher.wait_for("user:online", about(1))
    tab_b = await joined(pair, b, 1, lobby)
    return TwoTabs(lobby, tab_a, tab_b, watcher_a, watcher_b)


async def test_a_second_tab_on_another_node_announces_no_second_user_online(
    pair: Cluster,
) -> None:
    tabs = await two_tabs(pair)

    await barrier(tabs.tab_b, tabs.lobby, *tabs.watchers)  # B would have sent it first

    for watcher in tabs.watchers:
        assert count(watcher, "user:online", about(1)) == 1


async def test_closing_a_tab_while_another_is_open_on_another_node_announces_no_offline(
    pair: Cluster,
) -> None:
    tabs = await two_tabs(pair)
    a, b = pair.nodes
    ended = await a.figure(GRACES_ENDED)

    await tabs.tab_a.close()
    await a.graces_ended(1, since=ended)  # A's grace ran out (and B still has a tab)
    await heartbeats(a, b)  # and neither node's heartbeat finds user 1 gone either
    await barrier(tabs.watcher_a, tabs.lobby, tabs.watcher_b)  # A would have sent it first

    for watcher in tabs.watchers:
        assert count(watcher, "user:offline", about(1)) == 0
    listing = await tabs.watcher_a.call("presence:request")
    assert 1 in [user["userId"] for user in listing["users"]]


async def test_closing_the_last_tab_announces_user_offline_once_after_the_grace(
    pair: Cluster,
) -> None:
    tabs = await two_tabs(pair)
    a, b = pair.nodes
    ended = {node: await node.figure(GRACES_ENDED) for node in pair.nodes}
    await tabs.tab_a.close()
    await a.graces_ended(1, since=ended[a])

    closed = time.monotonic()
    await tabs.tab_b.close()
    waited = [
        await elapsed_until(watcher, "user:offline", about(1), closed, WAIT_S)
        for watcher in tabs.watchers
    ]
    await b.graces_ended(1, since=ended[b])
    await heartbeats(a, b)  # room for a second announcement, which neither may make
    await barrier(tabs.watcher_a, tabs.lobby, tabs.watcher_b)
    await barrier(tabs.watcher_b, tabs.lobby, tabs.watcher_a)

    assert min(waited) >= GRACE_MS / 1000 - 0.05, waited
    for watcher in tabs.watchers:
        [offline] = [data for data in watcher.received("user:offline") if data["userId"] == 1]
        assert offline["lastSeen"].endswith("Z")


async def test_contacts_scope_announces_presence_across_nodes_only_to_contacts(
    cluster: Cluster,
) -> None:
    a, b = cluster.start("A", "B", PRESENCE_SCOPE="contacts")
    shared = await cluster.conversation(1, 2)
    others = await cluster.conversation(3, 4)
    contact = await joined(cluster, a, 2, shared)
    stranger = await joined(cluster, a, 3, others)
    await joined(cluster, b, 1, shared)  # user 1 arrives on B: only user 2 is told
    await contact.wait_for("user:online", about(1))
    await joined(cluster, b, 4, others)  # published after it by B: once 3 hears of 4,
    await stranger.wait_for("user:online", about(4))  # 1's announcement would be in
    assert count(stranger, "user:online", about(1)) == 0
    assert count(contact, "user:online", about(4)) == 0


async def test_presence_request_on_any_node_lists_the_users_of_every_node(trio: Cluster) -> None:
    clients = [await trio.client(node, user) for user, node in enumerate(trio.nodes, start=1)]

    for client in clients:
        reply = await client.call("presence:request")
        assert sorted(user["userId"] for user in reply["users"]) == [1, 2, 3]
        assert reply["count"] == 3 and reply["truncated"] is False
        assert client.received("presence:list") == []  # answered in the ack only


async def test_join_lists_members_online_on_another_node(pair: Cluster) -> None:
    a, b = pair.nodes
    conversation = await pair.conversation(1, 2, 3)
    await pair.client(b, 2)
    await pair.client(b, 4)  # online, but not a member
    alice_a = await pair.client(a, 1)

    reply = await alice_a.call("conversation:join", {"conversationId": conversation})

    assert reply["ok"], reply
    assert sorted(reply["onlineUserIds"]) == [1, 2]


# -- c, d. a node killed with SIGKILL --------------------------------------------------------


@dataclass
class KillRun:
    """Node A killed under user 1 (only on A, typing) and user 4 (on A and B);
    users 2 on B and 3 on C watching."""

    offline_s: dict[str, float]  # seconds from the kill to user 1's user:offline
    offline_counts: dict[str, int]  # user:offline for user 1 per watcher
    survivor_offline_counts: dict[str, int]  # user:offline for user 4 per watcher
    listed: dict[str, list[int]]  # presence:request per watcher afterwards
    typing_end_s: float  # seconds from typing:start to isTyping false at user 2
    typing_end_counts: dict[str, int]
    logs: dict[str, str] = field(repr=False)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def kill_run(
    tmp_path_factory: pytest.TempPathFactory, redis_engine_url: str
) -> AsyncIterator[KillRun]:
    async with cluster_on(tmp_path_factory.mktemp("kill"), redis_engine_url) as cluster:
        a, b, c = cluster.start("A", "B", "C")
        lobby = await cluster.conversation(1, 2, 3, 4)
        watchers = {"B": await joined(cluster, b, 2, lobby),
                    "C": await joined(cluster, c, 3, lobby)}
        victim = await joined(cluster, a, 1, lobby)
        await joined(cluster, a, 4, lobby)
        await joined(cluster, b, 4, lobby)
        for watcher in watchers.values():
            await watcher.wait_for("user:online", about(4))

        typing_started = time.monotonic()
        assert (await victim.call("typing:start", {"conversationId": lobby}))["ok"]
        await watchers["B"].wait_for("typing:indicator", lambda data: data["isTyping"])
        killed = time.monotonic()
        a.kill()

        offline_waits = [
            elapsed_until(watcher, "user:offline", about(1), killed, OFFLINE_AFTER_KILL_LIMIT_S + 3)
            for watcher in watchers.values()
        ]
        typing_wait = elapsed_until(watchers["B"], "typing:indicator",
                                    lambda data: not data["isTyping"], typing_started,
                                    TYPING_END_LIMIT_S + 3)
        *offline_s, typing_end_s = await asyncio.gather(*offline_waits, typing_wait)
        await heartbeats(b, c, count=2)  # room for a second announcement
        await barrier(watchers["B"], lobby, watchers["C"])
        await barrier(watchers["C"], lobby, watchers["B"])

        listed = {}
        for name, watcher in watchers.items():
            reply = await watcher.call("presence:request")
            listed[name] = sorted(user["userId"] for user in reply["users"])
        yield KillRun(
            offline_s=dict(zip(watchers, offline_s, strict=True)),
            offline_counts={n: count(w, "user:offline", about(1)) for n, w in watchers.items()},
            survivor_offline_counts={
                n: count(w, "user:offline", about(4)) for n, w in watchers.items()
            },
            listed=listed,
            typing_end_s=typing_end_s,
            typing_end_counts={
                n: count(w, "typing:indicator", lambda data: not data["isTyping"])
                for n, w in watchers.items()
            },
            logs={node.server_id: node.log() for node in (b, c)},
        )


def test_a_killed_nodes_users_go_offline_within_the_presence_ttl_and_a_heartbeat(
    kill_run: KillRun,
) -> None:
    print(f"\nuser:offline after SIGKILL: {kill_run.offline_s} s "
          f"(PRESENCE_TTL_MS={TTL_MS}, heartbeat every {HEARTBEAT_S:.2f} s)")
    for seconds in kill_run.offline_s.values():
        assert seconds <= OFFLINE_AFTER_KILL_LIMIT_S, kill_run.offline_s


def test_a_killed_nodes_users_are_reported_offline_exactly_once_on_every_survivor(
    kill_run: KillRun,
) -> None:
    assert kill_run.offline_counts == {"B": 1, "C": 1}


def test_a_user_still_connected_on_a_surviving_node_is_not_reported_offline(
    kill_run: KillRun,
) -> None:
    assert kill_run.survivor_offline_counts == {"B": 0, "C": 0}


def test_presence_after_a_node_was_killed_lists_only_users_of_live_nodes(
    kill_run: KillRun,
) -> None:
    assert kill_run.listed == {"B": [2, 3, 4], "C": [2, 3, 4]}


def test_typing_ends_cluster_wide_once_when_the_typing_users_node_is_killed(
    kill_run: KillRun,
) -> None:
    print(f"\nisTyping false after typing:start on a killed node: {kill_run.typing_end_s:.2f} s "
          f"(TYPING_TIMEOUT_MS={TYPING_MS})")
    assert kill_run.typing_end_s <= TYPING_END_LIMIT_S
    assert kill_run.typing_end_counts == {"B": 1, "C": 1}


async def test_a_node_stopped_with_sigterm_announces_its_users_offline_at_once(
    pair: Cluster,
) -> None:
    """A graceful stop gives up the node's presence itself, so the others hear
    user:offline now rather than after the presence TTL (as for a crash)."""
    a, b = pair.nodes
    lobby = await pair.conversation(1, 2)
    watcher = await joined(pair, b, 2, lobby)
    await joined(pair, a, 1, lobby)
    await watcher.wait_for("user:online", about(1))
    stopped = time.monotonic()
    a.process.send_signal(signal.SIGTERM)
    offline_s = await elapsed_until(watcher, "user:offline", about(1), stopped, TTL_MS / 1000)
    returncode = await asyncio.to_thread(a.process.wait, NODE_KILL_TIMEOUT_S)
    print(f"\nuser:offline after SIGTERM: {offline_s:.2f} s (TTL {TTL_MS} ms)")
    assert returncode == 0
    assert offline_s < HEARTBEAT_S  # not the TTL path: the stop announced it
    reply = await watcher.call("presence:request")
    assert [user["userId"] for user in reply["users"]] == [2]


# -- e. Redis stops and comes back ----------------------------------------------------------

# Who is where in the outage scenario: users 1 and 2 on node A, user 3 on node B.
OUTAGE_USERS = {"alice": 1, "bob": 2, "carol": 3}
OUTAGE_NODES = {"alice": "A", "bob": "A", "carol": "B"}
# Users 4 (on A) and 5 (on B) connect after their node closed its clients and before
# those reconnect, so they hear any user:online or user:offline the resync causes.
WATCHERS = {"A": 4, "B": 5}


def highest_id(client: ChatClient) -> int:
    """The highest message id a socket has seen, received or acknowledged, as
    ChatManager keeps it for its rejoin with `since`."""
    ids: list[int] = [message["id"] for message in client.received("message:new")]
    ids += [ack["id"] for ack in client.received("message:ack")]
    return max(ids)


def set_key(url: str, key: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        client.set(key, "1")
    finally:
        client.close()


def key_exists(url: str, key: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return bool(client.exists(key))
    finally:
        client.close()


def wait_hashes(url: str, hashes: dict[str, set[str]], started: float,
                within: float) -> dict[str, float]:
    """Poll until each hash has (at least) its fields, for at most `within` seconds
    after `started`; return the seconds from `started` for those that did."""
    client = redis.Redis.from_url(url, socket_timeout=2, decode_responses=True)
    found: dict[str, float] = {}
    try:
        while len(found) < len(hashes) and time.monotonic() < started + within:
            for key, fields in hashes.items():
                if key not in found and fields <= set(client.hkeys(key)):
                    found[key] = time.monotonic() - started
            time.sleep(POLL_S)
    finally:
        client.close()
    return found


async def healthy_after(node: Node, started: float, within: float) -> float:
    await node.wait_healthy_async(within)
    return time.monotonic() - started


async def disconnected_within(client: ChatClient, deadline: float) -> None:
    """Wait for the socket's disconnect until `deadline` (monotonic), no longer."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            await client.disconnected.wait()


@dataclass
class Rejoin:
    """A socket closed by its node after the outage, and the socket replacing it."""

    disconnects: list[Disconnect]  # what the closed socket saw
    disconnect_s: float | None  # from the Redis restart; None if it was never closed
    since: int  # the highest message id the closed socket had seen
    rejoin_s: float  # from the Redis restart to the new socket's rejoin acknowledged
    replayed: list[str]  # message:new to the new socket in reply to that rejoin
    client: ChatClient = field(repr=False)


@dataclass
class RedisOutage:
    """Users 1 (alice) and 2 (bob) on node A, user 3 (carol) on node B, all in one
    conversation; Redis killed, a message sent on A, Redis restarted empty on the
    same port. Each socket its node closes is replaced, as ChatManager does, by a new
    one that rejoins with `since`; alice's new socket then sends "early" at once."""

    health_down: dict[str, tuple[int, dict[str, Any]]]
    during_ack: dict[str, Any]
    during_ack_s: float  # from message:send to its ack while Redis was down
    during_at_same_node: list[str]  # what bob (on A) received while Redis was down
    during_at_other_node: list[str]  # what carol (on B) received while Redis was down
    reconnect_s: dict[str, float]  # from the restart to /health 200 with redis connected
    redis_was_empty: bool  # a key set before the restart was gone after it
    restored_s: dict[str, float]  # from the restart to the node's presence hash back
    listed_before_rejoin: dict[str, list[int]]  # presence:request by each node's watcher
    rejoins: dict[str, Rejoin]
    early_while_b_deaf: bool  # "early" was sent before B closed its clients
    carol_messages: list[tuple[int, str]]  # (id, text) to carol's new socket, no barriers
    crossed_after: dict[str, list[str]]  # texts per new socket once all had rejoined
    listed_after: list[int]  # presence:request once everyone is back
    listed_members_after: list[int]  # the same for the conversation's members
    closed_again: list[str]  # sockets opened after the resync that were closed too
    online_announced: dict[str, int]  # user:online about users 1-3, per observer
    offline_announced: dict[str, int]  # user:offline about users 1-3, per observer
    logs: dict[str, str] = field(repr=False)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def redis_outage(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RedisOutage]:
    workdir = tmp_path_factory.mktemp("outage")
    server = RedisServer(workdir)
    server.start()
    try:
        async with cluster_on(workdir, server.url,
                              PRESENCE_GRACE_MS=str(OUTAGE_GRACE_MS)) as cluster:
            yield await outage(cluster, server)
    finally:
        server.stop()


async def outage(cluster: Cluster, server: RedisServer) -> RedisOutage:
    a, b = cluster.start("A", "B")
    nodes = {"A": a, "B": b}
    conversation = await cluster.conversation(1, 2, 3)
    lobby = await cluster.conversation(*WATCHERS.values(), title="watchers")
    old = {name: await joined(cluster, nodes[OUTAGE_NODES[name]], user, conversation)
           for name, user in OUTAGE_USERS.items()}
    ended = {name: record_disconnects(client) for name, client in old.items()}
    await send(old["alice"], conversation, "before")
    await old["carol"].wait_for("message:new", with_text("before"))
    marker = f"{cluster.prefix}:set-before-the-restart"
    await asyncio.to_thread(set_key, server.url, marker)

    server.stop()
    stopped = time.monotonic()
    for node in (a, b):
        await asyncio.to_thread(wait_until, partial(degraded, node), WAIT_S)
    health_down = {node.server_id: await node.health_async() for node in (a, b)}
    started = time.monotonic()
    during_ack = await old["alice"].call(
        "message:send", {"conversationId": conversation, "text": "during", "messageId": "d1"}
    )
    during_ack_s = time.monotonic() - started
    await old["bob"].wait_for("message:new", with_text("during"))
    during_at_same_node = texts(old["bob"])
    during_at_other_node = texts(old["carol"])

    # Down long enough for the listeners' retries to back off to their longest delay.
    await asyncio.sleep(max(0.0, stopped + REDIS_DOWN_S - time.monotonic()))
    server.start()
    restarted = time.monotonic()
    redis_was_empty = not await asyncio.to_thread(key_exists, server.url, marker)
    hashes = {
        node: {str(user) for name, user in OUTAGE_USERS.items() if OUTAGE_NODES[name] == node}
        for node in nodes
    }
    restore = asyncio.create_task(asyncio.to_thread(
        wait_hashes, server.url,
        {f"{cluster.prefix}:presence:node:{node}": users for node, users in hashes.items()},
        restarted, RESTORE_LIMIT_S + 2,
    ))
    health = {name: asyncio.create_task(healthy_after(node, restarted, RECONNECT_LIMIT_S + 5))
              for name, node in nodes.items()}

    watchers: dict[str, ChatClient] = {}
    listed_before: dict[str, list[int]] = {}
    rejoins: dict[str, Rejoin] = {}
    early_while_b_deaf = False

    async def resync(node_name: str) -> None:
        """As ChatManager would on every socket of `node_name` once the node closes it."""
        nonlocal early_while_b_deaf
        node = nodes[node_name]
        names = [name for name, where in OUTAGE_NODES.items() if where == node_name]
        for name in names:
            await disconnected_within(old[name], restarted + RESYNC_LIMIT_S + 2)
        await restore  # every node's presence is back (or the bound passed)
        watchers[node_name] = await joined(cluster, node, WATCHERS[node_name], lobby)
        listing = await watchers[node_name].call("presence:request")
        listed_before[node_name] = sorted(user["userId"] for user in listing["users"])
        for name in names:
            since = highest_id(old[name])
            client = await cluster.client(node, OUTAGE_USERS[name])
            reply = await client.call(
                "conversation:join", {"conversationId": conversation, "since": since}
            )
            assert reply["ok"], reply
            closes = ended[name]
            rejoins[name] = Rejoin(
                disconnects=closes,
                disconnect_s=closes[0].at - restarted if closes else None,
                since=since,
                rejoin_s=time.monotonic() - restarted,
                replayed=texts(client),
                client=client,
            )
        if node_name == "A":
            early_while_b_deaf = old["carol"].sio.connected
            await send(rejoins["alice"].client, conversation, "early")

    await asyncio.gather(resync("A"), resync("B"))
    reconnect_s = {name: await task for name, task in health.items()}
    restored_s = {key.rsplit(":", 1)[1]: seconds for key, seconds in (await restore).items()}
    reopened = {**{f"watcher {n}": w for n, w in watchers.items()},
                **{name: rejoin.client for name, rejoin in rejoins.items()}}
    closed_later = {name: record_disconnects(client) for name, client in reopened.items()}

    alice, bob, carol = (rejoins[name].client for name in OUTAGE_USERS)
    await send(alice, conversation, "after")
    await carol.wait_for("message:new", with_text("after"))
    await send(carol, conversation, "back")
    for client in (alice, bob):
        await client.wait_for("message:new", with_text("back"))
    crossed_after = {name: texts(rejoin.client) for name, rejoin in rejoins.items()}
    everyone = await carol.call("presence:request")
    members = await carol.call("presence:request", {"conversationId": conversation})

    # A user:offline the resync caused would come a grace period after the close:
    # every grace period the closes started has ended (or was cut short) by now.
    for node in (a, b):
        await node.graces_settled()
    await barrier(watchers["A"], lobby, watchers["B"])
    await barrier(watchers["B"], lobby, watchers["A"])
    await barrier(alice, conversation, carol)
    await barrier(carol, conversation, alice, bob)

    def announced(event: str) -> dict[str, int]:
        return {name: sum(count(client, event, about(user)) for user in OUTAGE_USERS.values())
                for name, client in reopened.items()}

    return RedisOutage(
        health_down=health_down,
        during_ack=during_ack,
        during_ack_s=during_ack_s,
        during_at_same_node=during_at_same_node,
        during_at_other_node=during_at_other_node,
        reconnect_s=reconnect_s,
        redis_was_empty=redis_was_empty,
        restored_s=restored_s,
        listed_before_rejoin=listed_before,
        rejoins=rejoins,
        early_while_b_deaf=early_while_b_deaf,
        carol_messages=[(message["id"], message["text"])
                        for message in carol.received("message:new")
                        if not message["text"].startswith("barrier-")],
        crossed_after=crossed_after,
        listed_after=sorted(user["userId"] for user in everyone["users"]),
        listed_members_after=sorted(user["userId"] for user in members["users"]),
        closed_again=[name for name, seen in closed_later.items() if seen],
        online_announced=announced("user:online"),
        offline_announced=announced("user:offline"),
        logs={node.server_id: node.log() for node in (a, b)},
    )


def test_without_redis_a_message_between_sockets_of_one_node_is_delivered_and_acked_sent(
    redis_outage: RedisOutage,
) -> None:
    print(f"\nack while Redis was down: {redis_outage.during_ack_s:.2f} s")
    assert redis_outage.during_ack["ok"] and redis_outage.during_ack["status"] == "sent"
    assert "during" in redis_outage.during_at_same_node
    assert redis_outage.during_ack_s < 2.0, "the ack waited for Redis"


def test_without_redis_health_answers_503_with_redis_disconnected(
    redis_outage: RedisOutage,
) -> None:
    for status, body in redis_outage.health_down.values():
        assert status == 503
        assert body["status"] == "degraded"
        assert body["redis"] == "disconnected"
        assert body["database"] == "connected"


def test_after_redis_restarts_every_node_reconnects_by_itself(redis_outage: RedisOutage) -> None:
    print(f"\n/health connected again after the Redis restart: {redis_outage.reconnect_s} s")
    assert set(redis_outage.reconnect_s) == {"A", "B"}
    assert max(redis_outage.reconnect_s.values()) <= RECONNECT_LIMIT_S


def test_after_redis_restarts_every_node_closes_the_transports_of_all_its_clients(
    redis_outage: RedisOutage,
) -> None:
    rejoins = redis_outage.rejoins
    print("\nclosed by its node after the Redis restart: "
          f"{ {name: rejoin.disconnect_s for name, rejoin in rejoins.items()} } s; "
          f"{ {name: rejoin.disconnects for name, rejoin in rejoins.items()} }")
    for name, rejoin in rejoins.items():
        assert len(rejoin.disconnects) == 1, (name, rejoin.disconnects)
        assert transport_closed(rejoin.disconnects[0]), (name, rejoin.disconnects)
        assert rejoin.disconnect_s is not None and rejoin.disconnect_s <= RESYNC_LIMIT_S, (
            name, rejoin.disconnect_s)
    assert redis_outage.closed_again == [], "sockets opened after the resync were closed too"


def test_a_rejoin_with_since_after_the_outage_replays_exactly_what_another_node_missed(
    redis_outage: RedisOutage,
) -> None:
    rejoins = redis_outage.rejoins
    print(f"\nrejoined after the Redis restart: "
          f"{ {name: round(rejoin.rejoin_s, 2) for name, rejoin in rejoins.items()} } s; "
          f"'early' sent while B had not resynced: {redis_outage.early_while_b_deaf}")
    assert "during" not in redis_outage.during_at_other_node
    assert rejoins["carol"].replayed[:1] == ["during"]
    assert set(rejoins["carol"].replayed) <= {"during", "early"}
    assert rejoins["alice"].replayed == []  # alice sent "during": its ack has the id
    assert rejoins["bob"].replayed == []
    ids = [message_id for message_id, _ in redis_outage.carol_messages]
    assert len(ids) == len(set(ids)), redis_outage.carol_messages
    assert ids == sorted(ids), redis_outage.carol_messages
    assert [text for _, text in redis_outage.carol_messages] == ["during", "early", "after"]


def test_after_redis_restarts_messages_cross_nodes_again(redis_outage: RedisOutage) -> None:
    crossed = redis_outage.crossed_after
    assert crossed["carol"][-1] == "after"
    assert crossed["alice"][-1] == crossed["bob"][-1] == "back"


def test_presence_is_restored_when_redis_comes_back_empty(redis_outage: RedisOutage) -> None:
    print(f"\nnode presence hash back after the Redis restart: {redis_outage.restored_s} s "
          f"(heartbeat every {HEARTBEAT_S:.2f} s); listed by a watcher on each node before "
          f"anyone reconnected: {redis_outage.listed_before_rejoin}")
    assert redis_outage.redis_was_empty
    assert set(redis_outage.restored_s) == {"A", "B"}, redis_outage.logs
    assert max(redis_outage.restored_s.values()) <= RESTORE_LIMIT_S
    # Users 1 and 2 are only on A, user 3 only on B, none of them reconnected yet.
    for node, listed in redis_outage.listed_before_rejoin.items():
        assert {1, 2, 3} <= set(listed), (node, listed)


def test_after_redis_restarts_presence_lists_everyone_who_reconnected(
    redis_outage: RedisOutage,
) -> None:
    assert redis_outage.listed_after == [1, 2, 3, *WATCHERS.values()]
    assert redis_outage.listed_members_after == [1, 2, 3]


def test_a_resync_within_the_grace_announces_no_user_online_again(
    redis_outage: RedisOutage,
) -> None:
    assert redis_outage.online_announced == dict.fromkeys(redis_outage.online_announced, 0)


def test_a_resync_within_the_grace_announces_no_user_offline(redis_outage: RedisOutage) -> None:
    assert redis_outage.offline_announced == dict.fromkeys(redis_outage.offline_announced, 0)


# -- f. forged and malformed messages on the fan-out channel ------------------------------


def forgeries(conversation: int, sid: str) -> list[bytes]:
    """What someone who can reach Redis, but lacks the cluster secret, might publish."""
    emit = {"method": "emit", "event": "message:new", "data": [{"text": "forged"}],
            "binary": False, "namespace": "/", "room": f"conversation:{conversation}",
            "skip_sid": None, "callback": None, "host_id": "intruder"}
    body = json.dumps(emit)
    wrong_key = hmac.new(b"not the cluster secret", body.encode(), hashlib.sha256).hexdigest()
    disconnect = {"method": "disconnect", "sid": sid, "namespace": "/", "host_id": "intruder"}
    return [
        json.dumps(emit).encode(),
        json.dumps({**emit, "room": None}).encode(),
        json.dumps(disconnect).encode(),
        json.dumps({"v": 1, "sig": "0" * 64, "body": body}).encode(),
        json.dumps({"v": 1, "sig": wrong_key, "body": body}).encode(),
        json.dumps({"v": 1, "body": body}).encode(),
        b"\x00\xff not json at all",
        b"[1, 2, 3]",
        b"",
        b"[" * 5000 + b"]" * 5000,  # nested past the parser's depth (a RecursionError)
    ]


def publish(cluster: Cluster, messages: list[bytes], channels: list[str]) -> None:
    """On each channel (every node reads them all), each message."""
    for channel in channels:
        for message in messages:
            assert cluster.publish(message, channel) == len(cluster.nodes)


async def forged_setup(pair: Cluster) -> tuple[int, ChatClient, ChatClient, int]:
    """Users 1 on A and 2 on B in one conversation, and the forgeries published."""
    a, b = pair.nodes
    conversation = await pair.conversation(1, 2)
    alice_a = await joined(pair, a, 1, conversation)
    bob_b = await joined(pair, b, 2, conversation)
    await alice_a.wait_for("user:joined", about(2))
    forget(alice_a, bob_b)
    messages = forgeries(conversation, bob_b.sio.get_sid())
    # The node-wide channel, and the room's channel that both nodes read.
    channels = [pair.channel, pair.room_channel(f"conversation:{conversation}")]
    await asyncio.to_thread(publish, pair, messages, channels)
    return conversation, alice_a, bob_b, len(messages) * len(channels)


async def test_forged_and_malformed_fanout_messages_reach_no_client(pair: Cluster) -> None:
    conversation, alice_a, bob_b, _ = await forged_setup(pair)

    await barrier(alice_a, conversation, bob_b)  # published after the forgeries
    await barrier(bob_b, conversation, alice_a)

    assert alice_a.sequence == ["message:ack", "message:new"]
    assert bob_b.sequence == ["message:new", "message:ack"]
    assert bob_b.sio.connected, "a forged disconnect was obeyed"
    assert not any("forged" in text for text in texts(alice_a) + texts(bob_b))


async def test_nodes_keep_delivering_across_after_forged_fanout_messages(pair: Cluster) -> None:
    conversation, alice_a, bob_b, _ = await forged_setup(pair)

    await send(alice_a, conversation, "still here")
    await send(bob_b, conversation, "me too")

    await bob_b.wait_for("message:new", with_text("still here"))
    await alice_a.wait_for("message:new", with_text("me too"))
    for node in pair.nodes:
        status, body = await node.health_async()
        assert (status, body["redis"]) == (200, "connected")


async def test_each_node_logs_a_warning_for_every_forged_fanout_message(pair: Cluster) -> None:
    _, _, _, forged = await forged_setup(pair)

    for node in pair.nodes:
        await asyncio.to_thread(wait_until, partial(logged, node, FORGED_LOG_LINE, forged), WAIT_S)
        assert node.log().count(FORGED_LOG_LINE) == forged
        assert "forged" not in node.log().replace(FORGED_LOG_LINE, "")


# -- f2. other ways to reach Redis ----------------------------------------------------------


def keys(url: str, pattern: str) -> list[str]:
    client = redis.Redis.from_url(url, socket_timeout=2, decode_responses=True)
    try:
        return sorted(str(key) for key in client.keys(pattern))
    finally:
        client.close()


async def crossing(cluster: Cluster, a: Node, b: Node) -> None:
    conversation = await cluster.conversation(1, 2)
    alice_a = await joined(cluster, a, 1, conversation)
    bob_b = await joined(cluster, b, 2, conversation)
    await send(alice_a, conversation, "over there")
    await bob_b.wait_for("message:new", with_text("over there"))


async def test_a_node_set_up_with_redis_host_port_password_and_db_joins_a_redis_url_node(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path, "--requirepass", "s3cret pass")
    server.start()
    url = f"redis://:s3cret%20pass@127.0.0.1:{server.port}/2"
    try:
        async with cluster_on(tmp_path, url) as cluster:
            a = cluster.launch("A", REDIS_URL=None, REDIS_HOST="127.0.0.1",
                               REDIS_PORT=str(server.port), REDIS_PASSWORD="s3cret pass",
                               REDIS_DB="2")
            b = cluster.launch("B")
            await a.wait_healthy_async()
            await b.wait_healthy_async()
            await crossing(cluster, a, b)
            leases = keys(url, f"{cluster.prefix}:presence:node:*")
            assert leases == [f"{cluster.prefix}:presence:node:{n}" for n in "AB"]
    finally:
        server.stop()


async def test_nodes_reach_redis_through_a_sentinel(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    master = private_redis
    config = tmp_path / "sentinel.conf"
    config.write_text(f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n", encoding="utf-8")
    sentinel = RedisServer(tmp_path, "--sentinel", config=config)
    try:
        sentinel.start()
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/0/mymaster"
        async with cluster_on(tmp_path, url, keys_url=master.url) as cluster:
            a, b = cluster.start("A", "B")
            await crossing(cluster, a, b)
            assert keys(master.url, f"{cluster.prefix}:presence:nodes") != []
    finally:
        sentinel.stop()
