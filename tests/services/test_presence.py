"""PresenceService: `user:online` on a user's first authenticated socket, to every
other authenticated socket (PRESENCE_SCOPE=global) or to the sockets of users who
share a conversation with them (contacts); `user:offline` with `lastSeen` (the
moment the last socket closed, also stored) once PRESENCE_GRACE_MS has passed
without a new socket; `online()` lists who is online, grace periods included.
The shared registry (Redis in a cluster) may fail: presence then falls back to
what this node knows."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from structlog.testing import capture_logs

from ecigdis_ws.cluster.presence import LocalPresenceRegistry
from ecigdis_ws.domain import Actor, OnlineUser, UserId
from ecigdis_ws.observability.metrics import Metrics
from ecigdis_ws.services.auth import parse_user_id
from ecigdis_ws.services.presence import POLL_GAP_S, PresenceService
from tests.services.conftest import ServiceHarness, make_database_read_only

HarnessFactory = Callable[..., AbstractAsyncContextManager[ServiceHarness]]

GRACE_S = 2.0  # PRESENCE_GRACE_MS's default


def online_events(harness: ServiceHarness, sid: str) -> list[tuple[str, Any]]:
    """The presence events socket `sid` was sent, oldest first."""
    return [
        (event, data) for event, data in harness.received(sid)
        if event in ("user:online", "user:offline")
    ]


async def last_seen_ms(harness: ServiceHarness, user_id: UserId) -> int | None:
    engine = harness.storage.engine  # type: ignore[attr-defined]
    table = f"{harness.settings.db_table_prefix}users"
    row = await engine.fetch_one(f"SELECT last_seen_ms FROM {table} WHERE id = ?",
                                 (str(user_id),))
    assert row is not None, f"user {user_id} was never recorded"
    value: int | None = row[0]
    return value


# -- arrivals ----------------------------------------------------------------------------


async def test_a_users_first_socket_is_announced_to_every_other_authenticated_socket(
    harness: ServiceHarness,
) -> None:
    alice = await harness.user(1, "Alice")
    anonymous = await harness.socket()

    bob = await harness.user(2, "Bob")

    assert online_events(harness, alice) == [("user:online", {"userId": 2, "name": "Bob"})]
    assert online_events(harness, bob) == []  # not told of his own arrival
    assert online_events(harness, anonymous) == []  # unauthenticated sockets hear nothing


async def test_a_users_second_socket_is_not_a_new_arrival(harness: ServiceHarness) -> None:
    alice = await harness.user(1, "Alice")
    bob = await harness.user(2, "Bob")

    await harness.user(2, "Bob")

    assert online_events(harness, alice) == [("user:online", {"userId": 2, "name": "Bob"})]
    assert online_events(harness, bob) == []


async def test_every_socket_of_a_user_hears_an_arrival(harness: ServiceHarness) -> None:
    alice_phone, alice_laptop = await harness.user(1, "Alice"), await harness.user(1, "Alice")

    await harness.user(2, "Bob")

    for sid in (alice_phone, alice_laptop):
        assert online_events(harness, sid) == [("user:online", {"userId": 2, "name": "Bob"})]


# -- departures and the grace period -------------------------------------------------------


async def test_the_last_socket_closing_announces_offline_when_the_grace_period_ends(
    harness: ServiceHarness,
) -> None:
    alice = await harness.user(1, "Alice")
    bob = await harness.user(2, "Bob")
    await harness.advance(5.25)

    await harness.close(bob)
    await harness.advance(GRACE_S - 0.5)
    assert online_events(harness, alice)[1:] == []
    await harness.advance(0.5)

    # lastSeen is when the socket closed, not when the grace period ended.
    assert online_events(harness, alice)[1:] == [
        ("user:offline", {"userId": 2, "lastSeen": "2027-01-15T08:00:05.250Z"})
    ]


async def test_offline_is_announced_to_every_authenticated_socket_but_nobody_else(
    harness: ServiceHarness,
) -> None:
    alice, cy = await harness.user(1, "Alice"), await harness.user(3, "Cy")
    anonymous = await harness.socket()
    bob = await harness.user(2, "Bob")
    harness.forget_received()

    await harness.close(bob)
    await harness.advance(GRACE_S)

    offline = ("user:offline", {"userId": 2, "lastSeen": "2027-01-15T08:00:00.000Z"})
    assert online_events(harness, alice) == [offline]
    assert online_events(harness, cy) == [offline]
    assert online_events(harness, anonymous) == []


async def test_lastseen_is_stored_as_the_moment_the_last_socket_closed(
    harness: ServiceHarness,
) -> None:
    bob = await harness.user(2, "Bob")
    await harness.advance(7)
    closed_at_ms = harness.now_ms

    await harness.close(bob)
    assert await last_seen_ms(harness, 2) is None  # not before the grace period ends
    await harness.advance(GRACE_S + 3)

    assert await last_seen_ms(harness, 2) == closed_at_ms


async def test_one_of_two_sockets_closing_announces_nothing(harness: ServiceHarness) -> None:
    alice = await harness.user(1, "Alice")
    bob_phone = await harness.user(2, "Bob")
    bob_laptop = await harness.user(2, "Bob")
    harness.forget_received()

    await harness.close(bob_phone)
    await harness.advance(GRACE_S * 10)

    assert online_events(harness, alice) == []
    assert harness.chat.presence.local_sockets(2) == frozenset({bob_laptop})


async def test_a_reconnect_within_the_grace_period_announces_neither_offline_nor_online(
    harness: ServiceHarness,
) -> None:
    alice = await harness.user(1, "Alice")
    bob = await harness.user(2, "Bob")
    harness.forget_received()

    await harness.close(bob)
    await harness.advance(GRACE_S - 0.5)
    await harness.user(2, "Bob")  # a page reload
    await harness.advance(GRACE_S * 10)

    assert online_events(harness, alice) == []


async def test_a_reconnect_within_the_grace_period_cancels_the_pending_offline(
    harness: ServiceHarness,
) -> None:
    alice = await harness.user(1, "Alice")
    bob = await harness.user(2, "Bob")
    harness.forget_received()

    await harness.close(bob)  # t=0: offline due at t=2
    await harness.advance(1)
    bob_again = await harness.user(2, "Bob")
    await harness.close(bob_again)  # t=1: offline now due at t=3, with lastSeen t=1
    await harness.advance(1.5)
    assert online_events(harness, alice) == []  # the first timer did not fire at t=2
    await harness.advance(0.5)

    assert online_events(harness, alice) == [
        ("user:offline", {"userId": 2, "lastSeen": "2027-01-15T08:00:01.000Z"})
    ]


async def test_a_reconnect_after_the_grace_period_is_announced_again(
    harness: ServiceHarness,
) -> None:
    alice = await harness.user(1, "Alice")
    bob = await harness.user(2, "Bob")

    await harness.close(bob)
    await harness.advance(GRACE_S)
    await harness.user(2, "Bob Jr")

    assert online_events(harness, alice) == [
        ("user:online", {"userId": 2, "name": "Bob"}),
        ("user:offline", {"userId": 2, "lastSeen": "2027-01-15T08:00:00.000Z"}),
        ("user:online", {"userId": 2, "name": "Bob Jr"}),
    ]


async def test_a_socket_reported_offline_twice_starts_one_grace_period(
    harness: ServiceHarness,
) -> None:
    alice = await harness.user(1, "Alice")
    bob = await harness.user(2, "Bob")
    harness.forget_received()

    await harness.close(bob)  # t=0
    await harness.advance(1)
    await harness.chat.presence.socket_offline(Actor(bob, 2, "Bob"))  # t=1: already gone
    await harness.advance(GRACE_S * 10)

    assert online_events(harness, alice) == [
        ("user:offline", {"userId": 2, "lastSeen": "2027-01-15T08:00:00.000Z"})
    ]


async def test_a_zero_grace_period_announces_offline_at_once(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(PRESENCE_GRACE_MS="0") as harness:
        alice = await harness.user(1, "Alice")
        bob = await harness.user(2, "Bob")
        harness.forget_received()

        await harness.close(bob)
        await harness.advance(0)

        assert online_events(harness, alice) == [
            ("user:offline", {"userId": 2, "lastSeen": "2027-01-15T08:00:00.000Z"})
        ]


async def test_offline_is_still_announced_when_lastseen_cannot_be_stored(
    harness: ServiceHarness,
) -> None:
    alice = await harness.user(1, "Alice")
    bob = await harness.user(2, "Bob")
    harness.forget_received()
    await make_database_read_only(harness)

    with capture_logs() as logs:
        await harness.close(bob)
        await harness.advance(GRACE_S)

    assert online_events(harness, alice) == [
        ("user:offline", {"userId": 2, "lastSeen": "2027-01-15T08:00:00.000Z"})
    ]
    assert [entry["event"] for entry in logs] == ["last seen not stored: database unavailable"]
    assert await last_seen_ms(harness, 2) is None


# -- who is online -------------------------------------------------------------------------


async def test_online_lists_every_user_with_a_socket_by_name(harness: ServiceHarness) -> None:
    await harness.user(1, "Alice")
    await harness.user(2, "Bob")
    await harness.user(2, "Bob")
    await harness.socket()  # unauthenticated: nobody

    online = await harness.chat.presence.online()

    assert sorted(online, key=lambda user: str(user.user_id)) == [
        OnlineUser(1, "Alice"), OnlineUser(2, "Bob")
    ]


async def test_online_among_lists_only_those_users_in_the_order_asked(
    harness: ServiceHarness,
) -> None:
    for user_id in (1, 2, 3):
        await harness.user(user_id, f"user{user_id}")

    online = await harness.chat.presence.online(among=[3, 9, 1])

    assert online == [OnlineUser(3, "user3"), OnlineUser(1, "user1")]


async def test_a_user_in_the_grace_period_is_still_online(harness: ServiceHarness) -> None:
    presence = harness.chat.presence
    await harness.user(1, "Alice")
    bob = await harness.user(2, "Bob")

    await harness.close(bob)
    await harness.advance(GRACE_S - 0.5)
    assert await presence.online(among=[2]) == [OnlineUser(2, "Bob")]
    assert presence.is_online_here(2)
    assert presence.local_sockets(2) == frozenset()
    assert presence.user_count == 2
    assert presence.graces_pending == 1

    await harness.advance(0.5)
    assert await presence.online(among=[2]) == []
    assert not presence.is_online_here(2)
    assert presence.user_count == 1
    assert presence.graces_pending == 0


async def test_local_sockets_are_the_users_authenticated_sockets_here(
    harness: ServiceHarness,
) -> None:
    presence = harness.chat.presence
    phone, laptop = await harness.user(1), await harness.user(1)
    await harness.user(2)

    assert presence.local_sockets(1) == frozenset({phone, laptop})
    await harness.close(phone)
    assert presence.local_sockets(1) == frozenset({laptop})
    assert presence.local_sockets(99) == frozenset()


async def test_stopping_announces_this_nodes_users_offline_at_once_without_lastseen(
    harness: ServiceHarness,
) -> None:
    alice = await harness.user(1, "Alice")
    bob = await harness.user(2, "Bob")
    await harness.advance(3)
    await harness.close(bob)  # in the grace period when the node stops
    harness.forget_received()

    await harness.chat.presence.stop()
    await harness.advance(GRACE_S * 10)  # the grace timer was cancelled

    assert sorted(
        (data["userId"], data["lastSeen"]) for _, data in online_events(harness, alice)
    ) == [(1, "2027-01-15T08:00:03.000Z"), (2, "2027-01-15T08:00:03.000Z")]
    assert all(event == "user:offline" for event, _ in online_events(harness, alice))
    # A node going away is not the user leaving: nothing is recorded.
    assert await last_seen_ms(harness, 1) is None
    assert await last_seen_ms(harness, 2) is None
    assert await harness.chat.presence.online() == []


# -- PRESENCE_SCOPE=contacts -----------------------------------------------------------


async def test_with_contacts_scope_an_arrival_is_announced_only_to_contacts(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(PRESENCE_SCOPE="contacts") as harness:
        await harness.conversation(1, 2)
        await harness.conversation(1, 2, 5, title="second")  # shared twice: told once
        alice = await harness.user(1, "Alice")
        stranger = await harness.user(3, "Cy")

        bob = await harness.user(2, "Bob")

        assert online_events(harness, alice) == [("user:online", {"userId": 2, "name": "Bob"})]
        assert online_events(harness, stranger) == []
        assert online_events(harness, bob) == []


async def test_with_contacts_scope_a_departure_is_announced_only_to_contacts(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(PRESENCE_SCOPE="contacts") as harness:
        await harness.conversation(1, 2)
        alice_phone, alice_laptop = await harness.user(1), await harness.user(1)
        stranger = await harness.user(3)
        bob = await harness.user(2)
        harness.forget_received()

        await harness.close(bob)
        await harness.advance(GRACE_S)

        offline = ("user:offline", {"userId": 2, "lastSeen": "2027-01-15T08:00:00.000Z"})
        assert online_events(harness, alice_phone) == [offline]
        assert online_events(harness, alice_laptop) == [offline]
        assert online_events(harness, stranger) == []


async def test_with_contacts_scope_a_user_with_no_contacts_is_announced_to_nobody(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(PRESENCE_SCOPE="contacts") as harness:
        sockets = [await harness.user(1), await harness.user(2)]
        harness.forget_received()

        loner = await harness.user(4)
        await harness.close(loner)
        await harness.advance(GRACE_S)

        assert [online_events(harness, sid) for sid in sockets] == [[], []]


async def test_with_contacts_scope_online_still_lists_everyone(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(PRESENCE_SCOPE="contacts") as harness:
        await harness.user(1, "Alice")
        await harness.user(2, "Bob")  # no conversation in common

        online = await harness.chat.presence.online()

        assert sorted(user.user_id for user in online) == [1, 2]


async def test_with_contacts_scope_a_presence_request_lists_only_the_askers_contacts(
    make_harness: HarnessFactory,
) -> None:
    """presence:request without a conversation tells what user:online would: the
    asker and the online users sharing a conversation with them, nobody else."""
    async with make_harness(PRESENCE_SCOPE="contacts", PRESENCE_LIST_MAX="2") as harness:
        await harness.conversation(1, 2)
        await harness.conversation(2, 5)  # Bob's contact, not Alice's
        await harness.conversation(1, 3)  # Cy is offline
        alice = await harness.user(1, "Alice")
        await harness.user(2, "Bob")
        await harness.user(5, "Eve")
        loner = await harness.user(9, "Mallory")
        conversations = harness.chat.conversations

        seen = await conversations.online_members(harness.actor(alice), None)
        assert seen == [OnlineUser(1, "Alice"), OnlineUser(2, "Bob")]
        listing = await conversations.presence_list(harness.actor(loner), None)
        assert (listing.users, listing.truncated) == ([OnlineUser(9, "Mallory")], False)
        # the cap counts the scoped list: Alice's two fit, Bob's three do not
        assert not (await conversations.presence_list(harness.actor(alice), None)).truncated
        bob = harness.actor(await harness.user(2, "Bob"))
        assert (await conversations.presence_list(bob, None)).truncated


async def test_with_global_scope_a_presence_request_lists_everyone(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(PRESENCE_SCOPE="global") as harness:
        await harness.conversation(1, 2)
        alice = await harness.user(1, "Alice")
        await harness.user(9, "Mallory")  # no conversation in common

        seen = await harness.chat.conversations.online_members(harness.actor(alice), None)

        assert sorted(user.user_id for user in seen) == [1, 9]


# -- the shared registry -------------------------------------------------------------------


class ObservedRegistry(LocalPresenceRegistry):
    """A stand-in for the Redis registry (a fake, as this file runs without Redis): the
    single-node counts, plus what a cluster can report or suffer. `down` makes every
    call fail as a Redis outage does; `dead_node_users` are reported by the next
    heartbeat as users of a node that stopped; `emptied` makes the next heartbeat
    report that Redis lost this node's entries."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.heartbeats = 0
        self.dead_node_users: list[str] = []
        self.emptied = False
        self.restored: list[tuple[dict[UserId, int], dict[UserId, str]]] = []

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("redis is down")

    async def join(self, user_id: UserId, name: str, now_ms: int) -> bool:
        self._check()
        return await super().join(user_id, name, now_ms)

    async def leave(self, user_id: UserId) -> None:
        self._check()
        await super().leave(user_id)

    async def release(self, user_id: UserId, now_ms: int) -> bool:
        self._check()
        return await super().release(user_id, now_ms)

    async def online(self, now_ms: int) -> dict[str, str]:
        self._check()
        return await super().online(now_ms)

    async def heartbeat(self, now_ms: int) -> tuple[bool, list[str]]:
        self._check()
        self.heartbeats += 1
        gone, self.dead_node_users = self.dead_node_users, []
        still_there, self.emptied = not self.emptied, False
        return still_there, gone

    async def restore(self, counts: dict[UserId, int], names: dict[UserId, str]) -> None:
        self.restored.append((counts, names))


async def presence_on(harness: ServiceHarness, registry: ObservedRegistry) -> PresenceService:
    """A second PresenceService on the harness's fan-out, storage and clock."""
    chat = harness.chat
    presence = PresenceService(
        fanout=chat.fanout, conversations=chat.storage.conversations, users=chat.storage.users,
        clock=chat.clock, tasks=chat.tasks,
        registry=registry, grace_ms=harness.settings.presence_grace_ms,
        ttl_ms=harness.settings.presence_ttl_ms,
        parse_user_id=lambda raw: parse_user_id(raw, "int") or raw, metrics=Metrics(),
    )
    await presence.start()
    return presence


async def test_the_lease_is_renewed_three_times_per_presence_ttl(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(PRESENCE_TTL_MS="3000") as harness:
        registry = ObservedRegistry()
        presence = await presence_on(harness, registry)
        assert registry.heartbeats == 1  # on start, before any socket

        await harness.advance(0.5)
        assert registry.heartbeats == 1
        await harness.advance(0.5)
        assert registry.heartbeats == 2
        await harness.advance(1)
        await harness.advance(1)
        assert registry.heartbeats == 4

        await presence.stop()
        await harness.advance(10)
        assert registry.heartbeats == 4  # a stopped node no longer renews


async def test_users_of_a_dead_node_are_announced_offline_at_the_next_heartbeat(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(PRESENCE_TTL_MS="3000") as harness:
        registry = ObservedRegistry()
        presence = await presence_on(harness, registry)
        listener = await harness.socket()
        await presence.socket_online(Actor(listener, 1, "Alice"))
        await harness.user(2, "Bob")  # recorded in the users table
        harness.forget_received()

        registry.dead_node_users = ["2"]
        await harness.advance(1)

        assert online_events(harness, listener) == [
            ("user:offline", {"userId": 2, "lastSeen": "2027-01-15T08:00:01.000Z"})
        ]
        assert await last_seen_ms(harness, 2) == harness.now_ms
        await presence.stop()


async def test_entries_redis_lost_are_restored_from_this_nodes_sockets(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(PRESENCE_TTL_MS="3000") as harness:
        registry = ObservedRegistry()
        presence = await presence_on(harness, registry)
        for user_id, name in ((1, "Alice"), (1, "Alice"), (2, "Bob")):
            await presence.socket_online(Actor(await harness.socket(), user_id, name))

        registry.emptied = True
        await harness.advance(1)

        assert registry.restored == [({1: 2, 2: 1}, {1: "Alice", 2: "Bob"})]
        await presence.stop()


async def test_when_the_registry_is_down_a_first_socket_here_is_still_announced(
    harness: ServiceHarness,
) -> None:
    registry = ObservedRegistry()
    presence = await presence_on(harness, registry)
    listener = await harness.socket()
    await presence.socket_online(Actor(listener, 1, "Alice"))
    registry.down = True

    await presence.socket_online(Actor(await harness.socket(), 2, "Bob"))
    await presence.socket_online(Actor(await harness.socket(), 2, "Bob"))  # a second tab

    assert online_events(harness, listener) == [("user:online", {"userId": 2, "name": "Bob"})]
    registry.down = False
    await presence.stop()


async def test_when_the_registry_is_down_online_lists_this_nodes_users(
    harness: ServiceHarness,
) -> None:
    registry = ObservedRegistry()
    presence = await presence_on(harness, registry)
    await presence.socket_online(Actor(await harness.socket(), 1, "Alice"))
    await presence.socket_online(Actor(await harness.socket(), 2, "Bob"))
    registry.down = True

    with capture_logs() as logs:
        online = await presence.online(among=[2, 1, 3])

    assert online == [OnlineUser(2, "Bob"), OnlineUser(1, "Alice")]
    assert [entry["event"] for entry in logs] == ["cluster presence unavailable"]
    registry.down = False
    await presence.stop()


async def test_when_the_registry_is_down_the_last_socket_leaving_is_still_announced(
    harness: ServiceHarness,
) -> None:
    registry = ObservedRegistry()
    presence = await presence_on(harness, registry)
    listener = await harness.socket()
    await presence.socket_online(Actor(listener, 1, "Alice"))
    bob = await harness.socket()
    await presence.socket_online(Actor(bob, 2, "Bob"))
    harness.forget_received()
    registry.down = True

    await presence.socket_offline(Actor(bob, 2, "Bob"))
    await harness.advance(GRACE_S)

    assert online_events(harness, listener) == [
        ("user:offline", {"userId": 2, "lastSeen": "2027-01-15T08:00:00.000Z"})
    ]
    registry.down = False
    await presence.stop()


# -- users on the REST long-poll ------------------------------------------------------------


async def test_a_poller_is_online_from_the_first_poll_until_the_gap_and_grace(
    harness: ServiceHarness,
) -> None:
    watcher = await harness.user(1)
    presence = harness.chat.presence
    async with presence.polling(3, "Carol"):
        assert harness.received(watcher, "user:online") == [{"userId": 3, "name": "Carol"}]
        async with presence.polling(3, "Carol"):  # a second tab's poll: no new arrival
            pass
        await harness.advance(POLL_GAP_S * 3)  # held all along: still online
    assert sorted(u.user_id for u in await presence.online()) == [1, 3]
    assert presence.local_sockets(3) == frozenset()  # (not a socket: not capped as one)
    await harness.advance(POLL_GAP_S - 0.1)
    async with presence.polling(3, "Carol"):  # polled again in time
        pass
    await harness.advance(POLL_GAP_S)  # no poll since: the grace period begins
    await harness.advance(GRACE_S - 0.1)
    assert harness.received(watcher, "user:offline") == []
    await harness.advance(0.1)
    [offline] = harness.received(watcher, "user:offline")
    assert offline["userId"] == 3
    assert sorted(u.user_id for u in await presence.online()) == [1]
    assert len(harness.received(watcher, "user:online")) == 1


async def test_a_poller_who_also_has_a_socket_goes_offline_with_the_last_of_both(
    harness: ServiceHarness,
) -> None:
    watcher = await harness.user(1)
    socket = await harness.user(3)
    async with harness.chat.presence.polling(3, "user3"):
        pass
    await harness.close(socket)
    await harness.advance(GRACE_S + 0.1)
    assert harness.received(watcher, "user:offline") == []  # still polling (within the gap)
    await harness.advance(POLL_GAP_S - GRACE_S - 0.1)  # the gap is over
    assert harness.received(watcher, "user:offline") == []
    await harness.advance(GRACE_S)
    assert len(harness.received(watcher, "user:offline")) == 1
    assert len(harness.received(watcher, "user:online")) == 1
