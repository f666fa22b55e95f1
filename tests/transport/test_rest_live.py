"""The HTTP fallback at par with the socket, through the real server on both
backends: typing over REST (POST /conversations/{id}/typing), who is online
(GET /presence), and typing and presence in the long-poll (GET /poll's `live`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp

from ecigdis_ws.services.presence import POLL_GAP_S
from ecigdis_ws.transport.rest_routes import REST_API
from tests.support import RunningServer
from tests.transport.conftest import room
from tests.transport.rest_support import Reply, Rest

HOLD_S = 25.0  # LONG_POLL_TIMEOUT_MS's default
TYPING_S = 6.0  # TYPING_TIMEOUT_MS's default
GRACE_S = 2.0  # PRESENCE_GRACE_MS's default


async def first_poll(rest: Rest, user: int) -> tuple[str, str]:
    """(cursor, live) of a poll without either: the present, answered at once."""
    reply = await rest.get("/poll", user=user)
    assert reply.status == 200 and reply.body["events"] == [], reply.body
    return reply.body["cursor"], reply.body["live"]


async def positions(rest: Rest, *users: int) -> list[tuple[str, str]]:
    """Each user's (cursor, live) once all of them are online from their first poll
    (each first poll announces its user to the others)."""
    for user in users:
        await first_poll(rest, user)
    return [await first_poll(rest, user) for user in users]


async def start_poll(rest: Rest, user: int, cursor: str, live: str) -> asyncio.Task[Reply]:
    """A poll request, in flight until the server answers it, once it is waiting."""
    feed = rest.server.app[REST_API].feed
    before = feed.waiting
    task = asyncio.create_task(rest.get(
        "/poll", user=user, params={"cursor": cursor, "live": live}, wait_s=60))
    await rest.server.wait_until(lambda: feed.waiting > before or task.done())
    return task


async def held(server: RunningServer, *polls: asyncio.Task[Reply]) -> None:
    """Everything so far has been handled and these polls still wait."""
    feed = server.app[REST_API].feed
    await server.wait_until(lambda: feed.all_asleep or any(p.done() for p in polls))
    assert not any(poll.done() for poll in polls)


async def finish(server: RunningServer, *polls: asyncio.Task[Reply]) -> None:
    """Let polls still held run out their hold time, answered."""
    await server.advance(HOLD_S)
    for poll in polls:
        assert (await asyncio.wait_for(poll, 5)).status == 200


def typing(user: int, conversation: int, is_typing: bool) -> dict[str, Any]:
    return {"event": "typing:indicator",
            "data": {"userId": user, "conversationId": conversation, "isTyping": is_typing}}


async def set_typing(rest: Rest, user: int, conversation: int, is_typing: Any) -> Reply:
    return await rest.post(f"/conversations/{conversation}/typing", user=user,
                           json={"isTyping": is_typing})


# -- typing over REST -------------------------------------------------------------------


async def test_rest_typing_reaches_the_sockets_and_the_polls_of_the_others(rest: Rest) -> None:
    server = rest.server
    conversation, (bob,) = await room(server, 2)
    await server.chat.storage.conversations.add_member(conversation, 1, 0)
    await server.chat.storage.conversations.add_member(conversation, 3, 0)
    carol_at, alice_at = await positions(rest, 3, 1)
    carol = await start_poll(rest, 3, *carol_at)
    alice = await start_poll(rest, 1, *alice_at)
    await held(server, carol, alice)

    started = await set_typing(rest, 1, conversation, True)
    assert (started.status, started.body) == (200, {"conversationId": conversation,
                                                    "isTyping": True})
    [on_socket] = await bob.wait_for("typing:indicator")
    assert on_socket == typing(1, conversation, True)["data"]
    answer = await asyncio.wait_for(carol, 5)  # no clock moved: woken by the typing
    assert answer.body["events"] == [typing(1, conversation, True)]
    assert answer.body["cursor"] == carol_at[0]  # the event log did not move

    carol = await start_poll(rest, 3, answer.body["cursor"], answer.body["live"])
    stopped = await set_typing(rest, 1, conversation, False)
    assert stopped.body == {"conversationId": conversation, "isTyping": False}
    assert (await asyncio.wait_for(carol, 5)).body["events"] == [
        typing(1, conversation, False)]
    await bob.wait_for("typing:indicator", count=2)
    # Alice's own poll is not told of her own typing, as her socket would not be.
    await held(server, alice)
    await finish(server, alice)


async def test_rest_typing_ends_by_itself_after_the_typing_timeout(rest: Rest) -> None:
    server = rest.server
    conversation, (bob,) = await room(server, 2)
    await server.chat.storage.conversations.add_member(conversation, 1, 0)
    assert (await set_typing(rest, 1, conversation, True)).status == 200
    await bob.wait_for("typing:indicator")
    await server.advance(TYPING_S - 0.1)
    assert len(bob.received("typing:indicator")) == 1
    # Started again over REST: extended, not announced twice (the socket's rule).
    assert (await set_typing(rest, 1, conversation, True)).status == 200
    await server.advance(TYPING_S - 0.1)
    assert len(bob.received("typing:indicator")) == 1
    await server.advance(0.2)
    [_, ended] = await bob.wait_for("typing:indicator", count=2)
    assert ended == typing(1, conversation, False)["data"]
    assert server.chat.typing.active == 0


async def test_rest_typing_is_refused_as_the_sockets_is(rest: Rest) -> None:
    server = rest.server
    conversation, (alice,) = await room(server, 1)
    socket_reply = await (await server.client(9)).call(
        "typing:start", {"conversationId": conversation})
    foreign = await set_typing(rest, 9, conversation, True)
    assert (foreign.status, foreign.code) == (403, socket_reply["error"]["code"])
    for body in ({}, {"isTyping": "true"}, {"isTyping": 1}, {"isTyping": None}):
        reply = await rest.post(f"/conversations/{conversation}/typing", user=1, json=body)
        assert (reply.status, reply.code) == (400, "INVALID_PAYLOAD"), body
    not_json = await rest.post(f"/conversations/{conversation}/typing", user=1, data="{")
    assert (not_json.status, not_json.code) == (400, "INVALID_PAYLOAD")
    anonymous = await rest.post(f"/conversations/{conversation}/typing",
                                json={"isTyping": True})
    assert (anonymous.status, anonymous.code) == (401, "UNAUTHENTICATED")
    assert server.chat.typing.active == 0
    assert alice.received("typing:indicator") == []


async def test_rest_typing_counts_against_the_request_rate(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
    session: aiohttp.ClientSession,
) -> None:
    async with make_server(RATE_LIMIT_EVENTS="3") as server:
        rest = Rest(server, session)
        conversation = await server.conversation(1, 2)
        # A burst of twice the rate, then refused (the clock does not move).
        codes = [(await set_typing(rest, 1, conversation, True)).status for _ in range(8)]
        assert codes == [200] * 6 + [429] * 2


# -- GET /presence ----------------------------------------------------------------------


async def test_get_presence_answers_what_presence_request_answers(rest: Rest) -> None:
    server = rest.server
    conversation, (alice, _) = await room(server, 1, 2)
    await server.client(5)  # online, not in the conversation
    everyone = await rest.get("/presence", user=1)
    socket_everyone = await alice.call("presence:request", {})
    assert everyone.status == 200
    assert {"ok": True, **everyone.body} == socket_everyone
    assert {u["userId"] for u in everyone.body["users"]} == {1, 2, 5}
    members = await rest.get("/presence", user=1, params={"conversationId": str(conversation)})
    assert {"ok": True, **members.body} == await alice.call(
        "presence:request", {"conversationId": conversation})
    assert {u["userId"] for u in members.body["users"]} == {1, 2}


async def test_get_presence_of_a_foreign_conversation_is_refused(rest: Rest) -> None:
    conversation, _ = await room(rest.server, 1)
    reply = await rest.get("/presence", user=9, params={"conversationId": str(conversation)})
    assert (reply.status, reply.code) == (403, "FORBIDDEN")
    for bad in ("abc", "0", "-1", "1.5"):
        reply = await rest.get("/presence", user=1, params={"conversationId": bad})
        assert (reply.status, reply.code) == (400, "INVALID_PAYLOAD"), bad


async def test_get_presence_is_cut_at_the_presence_list_max(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
    session: aiohttp.ClientSession,
) -> None:
    async with make_server(PRESENCE_LIST_MAX="2") as server:
        for user in (1, 2, 3):
            await server.client(user)
        reply = await Rest(server, session).get("/presence", user=1)
        assert (reply.body["count"], reply.body["truncated"]) == (2, True)


# -- typing and presence in the long-poll -----------------------------------------------


async def test_a_socket_typing_wakes_a_members_poll_only(rest: Rest) -> None:
    server = rest.server
    conversation = await server.conversation(1, 2)
    other = await server.conversation(1, 3)
    alice = await server.client(1)
    for joined in (conversation, other):
        await alice.call("conversation:join", {"conversationId": joined})
    bob_at, carol_at = await positions(rest, 2, 3)
    bob = await start_poll(rest, 2, *bob_at)
    carol = await start_poll(rest, 3, *carol_at)
    await held(server, bob, carol)
    assert (await alice.call("typing:start", {"conversationId": conversation}))["ok"]
    answer = await asyncio.wait_for(bob, 5)
    assert answer.body["events"] == [typing(1, conversation, True)]
    await held(server, carol)  # not a member: not told
    await alice.call("typing:start", {"conversationId": other})
    assert (await asyncio.wait_for(carol, 5)).body["events"] == [typing(1, other, True)]


async def test_a_poll_without_live_gets_no_typing_or_presence_as_before(rest: Rest) -> None:
    server = rest.server
    conversation, (alice,) = await room(server, 1)
    await server.chat.storage.conversations.add_member(conversation, 2, 0)
    cursor, _ = await first_poll(rest, 2)
    feed = server.app[REST_API].feed
    old_client = asyncio.create_task(rest.poll(2, cursor, wait_s=60))
    await server.wait_until(lambda: feed.waiting == 1)
    await alice.call("typing:start", {"conversationId": conversation})
    await server.client(3)  # user:online
    await held(server, old_client)
    sent = await alice.call("message:send",
                            {"conversationId": conversation, "text": "hi", "messageId": "m"})
    answer = await asyncio.wait_for(old_client, 5)
    assert [e["event"] for e in answer.body["events"]] == ["message:new"]
    assert answer.body["events"][0]["data"]["id"] == sent["id"]


async def test_typing_between_two_polls_is_in_the_next_one(rest: Rest) -> None:
    server = rest.server
    conversation, (alice,) = await room(server, 1)
    await server.chat.storage.conversations.add_member(conversation, 2, 0)
    cursor, live = await first_poll(rest, 2)
    await alice.call("typing:start", {"conversationId": conversation})
    await alice.call("typing:stop", {"conversationId": conversation})
    reply = await rest.get("/poll", user=2, params={"cursor": cursor, "live": live})
    assert reply.body["events"] == [typing(1, conversation, True),
                                    typing(1, conversation, False)]
    # From the answer's position on, nothing is repeated: the next poll is held.
    again = await start_poll(rest, 2, reply.body["cursor"], reply.body["live"])
    await held(server, again)
    # A position from another node or process starts from now: held as well.
    elsewhere = await start_poll(rest, 2, reply.body["cursor"], "0bad0bad:0")
    await held(server, again, elsewhere)
    await finish(server, again, elsewhere)


async def test_messages_and_typing_come_in_one_answer_log_first(rest: Rest) -> None:
    server = rest.server
    conversation, (alice,) = await room(server, 1)
    await server.chat.storage.conversations.add_member(conversation, 2, 0)
    cursor, live = await first_poll(rest, 2)
    await alice.call("typing:start", {"conversationId": conversation})
    ack = await alice.call("message:send",
                           {"conversationId": conversation, "text": "hi", "messageId": "h"})
    reply = await rest.get("/poll", user=2, params={"cursor": cursor, "live": live})
    assert [(e["event"], e["data"].get("id")) for e in reply.body["events"]] == [
        ("message:new", ack["id"]), ("typing:indicator", None), ("typing:indicator", None)]
    assert int(reply.body["cursor"]) > int(cursor)


async def test_a_malformed_live_position_is_invalid(rest: Rest) -> None:
    cursor, _ = await first_poll(rest, 1)
    for bad in ("x", "12", "0bad0bad:", "0BAD0BAD:1", "0bad0bad:-1"):
        reply = await rest.get("/poll", user=1, params={"cursor": cursor, "live": bad})
        assert (reply.status, reply.code) == (400, "INVALID_PAYLOAD"), bad


async def test_a_socket_coming_and_going_reaches_a_waiting_poll(rest: Rest) -> None:
    server = rest.server
    cursor, live = await first_poll(rest, 2)
    waiting = await start_poll(rest, 2, cursor, live)
    await held(server, waiting)
    alice = await server.client(1, "Alice")
    answer = await asyncio.wait_for(waiting, 5)
    assert answer.body["events"] == [
        {"event": "user:online", "data": {"userId": 1, "name": "Alice"}}]
    waiting = await start_poll(rest, 2, answer.body["cursor"], answer.body["live"])
    await server.disconnect(alice)
    await server.advance(GRACE_S)
    [gone] = (await asyncio.wait_for(waiting, 5)).body["events"]
    assert gone["event"] == "user:offline" and gone["data"]["userId"] == 1


async def test_with_contacts_scope_a_poll_hears_only_its_contacts_presence(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
    session: aiohttp.ClientSession,
) -> None:
    async with make_server(PRESENCE_SCOPE="contacts") as server:
        rest = Rest(server, session)
        await server.conversation(1, 2)
        contact = await start_poll(rest, 2, *await first_poll(rest, 2))
        stranger = await start_poll(rest, 3, *await first_poll(rest, 3))
        await held(server, contact, stranger)
        await server.client(1, "Alice")
        assert (await asyncio.wait_for(contact, 5)).body["events"] == [
            {"event": "user:online", "data": {"userId": 1, "name": "Alice"}}]
        await held(server, stranger)
        await finish(server, stranger)


# -- a poller counts as online ----------------------------------------------------------


async def test_a_user_only_on_the_long_poll_is_online_while_polling(rest: Rest) -> None:
    server = rest.server
    alice = await server.client(1)
    cursor, live = await first_poll(rest, 3)
    [online] = await alice.wait_for("user:online")
    assert online == {"userId": 3, "name": "user3"}
    listed = await alice.call("presence:request", {})
    assert 3 in {user["userId"] for user in listed["users"]}
    # Held for the whole hold time, then polling again at once: never offline.
    waiting = await start_poll(rest, 3, cursor, live)
    await server.advance(HOLD_S)
    answer = await asyncio.wait_for(waiting, 5)
    waiting = await start_poll(rest, 3, answer.body["cursor"], answer.body["live"])
    await server.advance(POLL_GAP_S + GRACE_S + 1)
    assert alice.received("user:offline") == []
    # Answered and no poll since: offline after POLL_GAP_S and the grace period.
    await server.advance(HOLD_S - POLL_GAP_S - GRACE_S - 1)
    await asyncio.wait_for(waiting, 5)
    await server.advance(POLL_GAP_S)
    assert alice.received("user:offline") == []
    await server.advance(GRACE_S)
    [offline] = await alice.wait_for("user:offline")
    assert offline["userId"] == 3
    listed = await alice.call("presence:request", {})
    assert 3 not in {user["userId"] for user in listed["users"]}


async def test_polls_do_not_count_against_the_socket_cap(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
    session: aiohttp.ClientSession,
) -> None:
    async with make_server(MAX_CONNECTIONS_PER_USER="1") as server:
        await first_poll(Rest(server, session), 1)
        alice = await server.client(1)
        assert alice.sio.connected
