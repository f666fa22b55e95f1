"""The database writer is protected from any one user (issue 13): a create writes
its members in one INSERT, a conversation has at most MAX_CONVERSATION_MEMBERS,
a user creates at most RATE_LIMIT_CONVERSATIONS a minute, and MEMBER_ADD_POLICY
says whom a user may put into a conversation. Driven over REST and a real socket.

The attack measured: two users creating 1,000-member conversations, 40 at a time,
held the single SQLite writer so long that a third user's message:send answered
UNAVAILABLE; and 300 conversations a stranger put a victim into made the victim's
conversation list 2.2 MB."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest

from ecigdis_ws.storage.sql import SqlStorage
from ecigdis_ws.storage.sqlite import SqliteEngine
from tests.support import RunningServer
from tests.transport.rest_support import Reply, Rest

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]
API_KEY = "a-test-api-key-that-is-long-enough-for-production"


async def create(rest: Rest, user: int, members: list[int | str]) -> Reply:
    return await rest.post("/conversations", user=user, json={"title": "t", "members": members})


async def listed(rest: Rest, user: int) -> list[int]:
    reply = await rest.get("/conversations", user=user)
    assert reply.status == 200
    return [conversation["id"] for conversation in reply.body["conversations"]]


# -- one INSERT for the members -----------------------------------------------------------


@pytest.mark.backends("sqlite")  # the SQL is sql.py's for both engines; SQLite traces it
async def test_a_1000_member_create_writes_its_members_in_one_insert(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    storage = server.chat.storage
    assert isinstance(storage, SqlStorage) and isinstance(storage.engine, SqliteEngine)
    writer = storage.engine._raw[0]
    statements: list[str] = []
    await writer.set_trace_callback(statements.append)  # every statement the writer runs
    try:
        reply = await create(Rest(server, session), 1, list(range(2, 1001)))
    finally:
        await writer.set_trace_callback(None)

    assert reply.status == 201 and len(reply.body["members"]) == 1000
    member_inserts = [s for s in statements if s.startswith("INSERT INTO chat_members")]
    assert len(member_inserts) == 1, f"{len(member_inserts)} INSERTs for the members"
    assert len(await storage.conversations.member_ids(reply.body["id"])) == 1000


# -- MAX_CONVERSATION_MEMBERS ---------------------------------------------------------------


async def test_a_create_past_max_conversation_members_is_refused_with_nothing_written(
    make_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    async with make_server(MAX_CONVERSATION_MEMBERS="5") as server:
        rest = Rest(server, session)

        refused = await create(rest, 1, [2, 3, 4, 5, 6])  # six, the creator included

        assert refused.status == 400 and refused.code == "INVALID_PAYLOAD"
        assert "at most 5 members" in refused.body["error"]["message"]
        assert await listed(rest, 1) == [] and await listed(rest, 6) == []
        # Repeats (and the creator named again) count once: five members.
        accepted = await create(rest, 1, [2, 3, 4, 5, 2, "3", 1])
        assert accepted.status == 201 and accepted.body["members"] == [1, 2, 3, 4, 5]


async def test_the_server_api_cannot_add_past_max_conversation_members(
    make_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    async with make_server(MAX_CONVERSATION_MEMBERS="3", API_KEY=API_KEY) as server:
        rest = Rest(server, session)
        conversation = await server.conversation(1, 2, 3)
        path = f"/conversations/{conversation}/members"

        refused = await rest.server_call("POST", path, API_KEY, {"userId": 4})

        assert refused.status == 400 and refused.code == "INVALID_PAYLOAD"
        assert await server.chat.storage.conversations.member_ids(conversation) == [1, 2, 3]
        assert await listed(rest, 4) == []
        again = await rest.server_call("POST", path, API_KEY, {"userId": 3})  # a member: fine
        assert again.status == 200 and again.body["changed"] is False


# -- RATE_LIMIT_CONVERSATIONS ---------------------------------------------------------------


async def test_creates_past_the_users_rate_are_refused_429_until_the_minute_refills(
    make_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    async with make_server(RATE_LIMIT_CONVERSATIONS="2") as server:  # bursts of 4
        rest = Rest(server, session)
        statuses = [(await create(rest, 1, [2])).status for _ in range(5)]

        assert statuses == [201, 201, 201, 201, 429]
        refused = await create(rest, 1, [2])
        assert refused.code == "RATE_LIMITED" and "Retry-After" in refused.headers
        assert len(await listed(rest, 2)) == 4
        assert (await create(rest, 3, [2])).status == 201  # another user's own bucket
        await server.advance(30)  # 2 a minute: one more after 30 s
        assert [(await create(rest, 1, [2])).status for _ in range(2)] == [201, 429]


class CreateFlood:
    """Users creating 1,000-member conversations over REST, `workers` requests in
    flight each, until stopped; in a thread of its own (its own event loop), so
    that the attackers' CPU is not spent in the server's event loop."""

    def __init__(self, server: RunningServer, users: list[int], workers: int) -> None:
        self.url = server.url + "/api/messenger/conversations"
        self.requests = [
            ({"Authorization": f"Bearer {server.token(user)}",
              "Content-Type": "application/json"},
             json.dumps({"title": "spam", "members": list(range(user * 1000 + 1,
                                                                 user * 1000 + 1000))}))
            for user in users
        ]
        self.workers = workers
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._flood()))

    async def _flood(self) -> None:
        async with aiohttp.ClientSession() as http:

            async def worker(headers: dict[str, str], body: str) -> None:
                while not self._stop.is_set():
                    async with http.post(self.url, data=body, headers=headers) as reply:
                        await reply.read()
                        self.statuses.append(reply.status)

            await asyncio.gather(*(
                worker(headers, body) for headers, body in self.requests
                for _ in range(self.workers)
            ))

    def created(self) -> int:
        return self.statuses.count(201)

    async def __aenter__(self) -> CreateFlood:
        self._thread.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        # (joined off the server's loop: the flood's last requests need it to answer)
        await asyncio.to_thread(self._thread.join)


async def test_a_users_messages_keep_flowing_while_two_others_flood_large_creates(
    make_server: ServerFactory,
) -> None:
    """The finding: 40 concurrent 1,000-member creates by two users starved the
    writer and a third user's send answered UNAVAILABLE."""
    async with make_server() as server:  # DB_TIMEOUT_MS 3 s, RATE_LIMIT_CONVERSATIONS 10
        conversation = await server.conversation(900, 901)
        carol = await server.client(900)
        assert (await carol.call("conversation:join", {"conversationId": conversation}))["ok"]
        async with CreateFlood(server, [1, 2], workers=20) as flood:
            await server.wait_until(lambda: flood.created() >= 2)
            acks = []
            for n in range(10):
                acks.append(await carol.call("message:send", {
                    "conversationId": conversation, "text": f"hi {n}", "messageId": f"m{n}",
                }))
            flooded = len(flood.statuses)

        assert [ack.get("ok") for ack in acks] == [True] * 10, acks
        assert flooded > 40 and set(flood.statuses) <= {201, 429}
        assert flood.created() <= 2 * 20  # each user's burst of RATE_LIMIT_CONVERSATIONS


# -- MEMBER_ADD_POLICY ------------------------------------------------------------------------


async def test_by_default_a_user_may_create_a_conversation_with_anyone(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    rest = Rest(server, session)
    reply = await create(rest, 1, [2])
    assert reply.status == 201 and await listed(rest, 2) == [reply.body["id"]]


async def test_with_policy_server_api_only_the_main_site_puts_others_into_conversations(
    make_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    async with make_server(MEMBER_ADD_POLICY="server_api", API_KEY=API_KEY) as server:
        rest = Rest(server, session)

        refused = await create(rest, 1, [2])

        assert refused.status == 403 and refused.code == "FORBIDDEN"
        assert await listed(rest, 1) == [] and await listed(rest, 2) == []
        alone = await create(rest, 1, [1])  # naming oneself only is no one else
        assert alone.status == 201 and alone.body["members"] == [1]
        added = await rest.server_call(
            "POST", f"/conversations/{alone.body['id']}/members", API_KEY, {"userId": 2}
        )
        assert added.status == 200 and added.body["changed"] is True
        assert await listed(rest, 2) == [alone.body["id"]]


async def test_with_policy_contacts_a_user_adds_only_people_they_share_a_conversation_with(
    make_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    async with make_server(MEMBER_ADD_POLICY="contacts") as server:
        rest = Rest(server, session)
        await server.conversation(1, 2)

        stranger = await create(rest, 1, [2, 3])

        assert stranger.status == 403 and stranger.code == "FORBIDDEN"
        assert await listed(rest, 3) == []
        contact = await create(rest, 1, [2])
        assert contact.status == 201 and contact.body["members"] == [1, 2]
