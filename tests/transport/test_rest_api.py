"""The REST API's user routes through the real server, on both backends:
every route, authentication, the socket's error codes, idempotency shared with
message:send, and fan-out to the sockets in the room."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import pytest

from ecigdis_ws.services.auth import mint_token
from ecigdis_ws.settings import Settings
from tests.support import RunningServer
from tests.transport.conftest import room
from tests.transport.rest_support import USER_API, Rest

# -- conversations ----------------------------------------------------------------------


async def test_create_conversation_includes_the_creator_and_merges_repeats(rest: Rest) -> None:
    reply = await rest.post("/conversations", user=1,
                            json={"title": "Ops", "members": [2, 3, 2, "3"]})
    assert reply.status == 201
    assert reply.body["title"] == "Ops"
    assert reply.body["members"] == [1, 2, 3]
    assert reply.body["unreadCount"] == 0
    assert reply.body["lastMessage"] is None
    assert await rest.server.chat.storage.conversations.member_ids(reply.body["id"]) == [1, 2, 3]


async def test_conversation_list_counts_unread_messages_from_others(rest: Rest) -> None:
    first = await rest.server.conversation(1, 2, title="first")
    second = await rest.server.conversation(1, 3, title="second")
    await rest.server.conversation(2, 3, title="not mine")
    for n in range(3):
        assert (await rest.send(2, first, f"hello {n}", f"a{n}")).status == 201
    own = await rest.send(1, first, "mine", "b1")
    assert (await rest.send(3, second, "later", "c1")).status == 201

    listing = await rest.get("/conversations", user=1)
    assert listing.status == 200
    by_id = {c["id"]: c for c in listing.body["conversations"]}
    assert set(by_id) == {first, second}
    assert [c["id"] for c in listing.body["conversations"]] == [second, first]  # by activity
    assert by_id[first]["unreadCount"] == 3  # not counting user 1's own message
    assert by_id[first]["lastMessage"]["id"] == own.body["id"]
    assert by_id[first]["members"] == [1, 2]
    assert by_id[second]["unreadCount"] == 1

    second_message = by_id[first]["lastMessage"]["id"] - 2  # the 2nd of user 2's three
    read = await rest.post(f"/conversations/{first}/read", user=1,
                           json={"messageId": second_message})
    assert read.status == 200 and read.body == {"advanced": True}
    after = {c["id"]: c for c in (await rest.get("/conversations", user=1)).body["conversations"]}
    assert after[first]["unreadCount"] == 1
    assert after[first]["lastReadMessageId"] == second_message


@pytest.mark.parametrize("body", [
    {"title": 5},
    {"title": "x" * 256},
    {"members": "2"},
    {"members": [0]},
    {"members": [True]},
    {"members": ["two"]},
    {"members": list(range(1, 1003))},
    ["not", "an", "object"],
])
async def test_create_conversation_refuses_bad_input(rest: Rest, body: Any) -> None:
    reply = await rest.post("/conversations", user=1, json=body)
    assert (reply.status, reply.code) == (400, "INVALID_PAYLOAD")


# -- messages ---------------------------------------------------------------------------


async def test_a_rest_send_is_acknowledged_like_the_socket_and_reaches_the_room(
    server: RunningServer, rest: Rest
) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    reply = await rest.send(1, conversation, "over http", 77)
    assert reply.status == 201
    assert reply.body["messageId"] == 77  # echoed as sent, a number stays a number
    assert reply.body["status"] == "sent"
    assert reply.body["conversationId"] == conversation
    assert "duplicate" not in reply.body
    for client in (alice, bob):  # the sender's own socket hears it too
        [new] = await client.wait_for("message:new")
        assert new["id"] == reply.body["id"]
        assert new["messageId"] == 77
        assert new["text"] == "over http"
        assert new["userId"] == 1
        assert new["senderName"] == "user1"
        assert new["createdAt"] == reply.body["createdAt"]


async def test_the_same_message_id_twice_over_rest_is_stored_once(
    server: RunningServer, rest: Rest
) -> None:
    conversation, (_, bob) = await room(server, 1, 2)
    first = await rest.send(1, conversation, "once", "m-1")
    again = await rest.send(1, conversation, "once", "m-1")
    assert (first.status, again.status) == (201, 200)
    assert again.body["duplicate"] is True
    assert again.body["id"] == first.body["id"]
    await bob.wait_for("message:new")
    page = await rest.get(f"/conversations/{conversation}/messages", user=2)
    assert [m["id"] for m in page.body["messages"]] == [first.body["id"]]
    assert len(bob.received("message:new")) == 1


async def test_a_message_id_sent_over_rest_then_the_socket_is_a_duplicate(
    server: RunningServer, rest: Rest
) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    first = await rest.send(1, conversation, "hello", "shared-id")
    ack = await alice.call("message:send", {
        "conversationId": conversation, "text": "hello", "messageId": "shared-id"})
    assert ack["ok"] and ack["duplicate"] is True and ack["id"] == first.body["id"]
    socket_first = await alice.call("message:send",
                                    {"conversationId": conversation, "text": "x", "messageId": 9})
    again = await rest.send(1, conversation, "x", "9")  # ids compare as text
    assert again.status == 200 and again.body["id"] == socket_first["id"]
    await bob.wait_for("message:new", count=2)
    assert len(bob.received("message:new")) == 2


async def test_messages_page_forwards_with_since_and_backwards_with_before(
    server: RunningServer, rest: Rest
) -> None:
    conversation = await server.conversation(1, 2)
    ids = [(await rest.send(1, conversation, f"m{n}", f"p{n}")).body["id"] for n in range(7)]
    path = f"/conversations/{conversation}/messages"

    newest = await rest.get(path, user=2, params={"limit": "3"})
    assert [m["id"] for m in newest.body["messages"]] == ids[4:]
    assert newest.body["hasMore"] is True
    older = await rest.get(path, user=2, params={"limit": "3", "before": str(ids[4])})
    assert [m["id"] for m in older.body["messages"]] == ids[1:4]
    oldest = await rest.get(path, user=2, params={"limit": "3", "before": str(ids[1])})
    assert [m["id"] for m in oldest.body["messages"]] == ids[:1]
    assert oldest.body["hasMore"] is False

    forward = await rest.get(path, user=2, params={"since": "0", "limit": "4"})
    assert [m["id"] for m in forward.body["messages"]] == ids[:4]
    assert forward.body["hasMore"] is True
    rest_of_it = await rest.get(path, user=2, params={"since": str(ids[3])})
    assert [m["id"] for m in rest_of_it.body["messages"]] == ids[4:]
    assert rest_of_it.body["hasMore"] is False
    window = await rest.get(path, user=2, params={"since": str(ids[1]), "before": str(ids[5])})
    assert [m["id"] for m in window.body["messages"]] == ids[2:5]
    first = window.body["messages"][0]
    assert set(first) == {"id", "messageId", "conversationId", "userId", "senderName", "text",
                          "createdAt", "reactions"}
    assert first["messageId"] == "p2"


async def test_message_routes_are_for_members_only(server: RunningServer, rest: Rest) -> None:
    conversation = await server.conversation(1, 2)
    message = await rest.send(1, conversation, "hi", "x1")
    path = f"/conversations/{conversation}"
    for reply in (
        await rest.get(path + "/messages", user=3),
        await rest.send(3, conversation, "intruder", "y1"),
        await rest.post(path + "/read", user=3, json={"messageId": message.body["id"]}),
        await rest.post(f"{path}/messages/{message.body['id']}/reactions", user=3,
                        json={"emoji": "👍"}),
    ):
        assert (reply.status, reply.code) == (403, "FORBIDDEN")


@pytest.mark.parametrize(("body", "why"), [
    ({"text": "no id"}, "messageId missing"),
    ({"messageId": True, "text": "x"}, "boolean id"),
    ({"messageId": "x" * 65, "text": "x"}, "id too long"),
    ({"messageId": "a"}, "text missing"),
    ({"messageId": "a", "text": "   "}, "blank text"),
    ({"messageId": "a", "text": "x" * 4001}, "text too long"),
    ({"messageId": "a", "text": 5}, "text not a string"),
])
async def test_send_refuses_what_message_send_refuses(
    server: RunningServer, rest: Rest, body: dict[str, Any], why: str
) -> None:
    conversation = await server.conversation(1)
    reply = await rest.post(f"/conversations/{conversation}/messages", user=1, json=body)
    assert (reply.status, reply.code) == (400, "INVALID_PAYLOAD"), why


async def test_bad_ids_in_paths_and_queries_are_invalid_payload(
    server: RunningServer, rest: Rest
) -> None:
    conversation = await server.conversation(1)
    for reply in (
        await rest.get("/conversations/0/messages", user=1),
        await rest.get("/conversations/abc/messages", user=1),
        await rest.get(f"/conversations/{conversation}/messages", user=1,
                       params={"limit": "0"}),
        await rest.get(f"/conversations/{conversation}/messages", user=1,
                       params={"limit": "501"}),
        await rest.get(f"/conversations/{conversation}/messages", user=1,
                       params={"since": "-1"}),
        await rest.get(f"/conversations/{conversation}/messages", user=1,
                       params={"before": "soon"}),
        await rest.post(f"/conversations/{conversation}/read", user=1, json={"messageId": 0}),
        await rest.post(f"/conversations/{conversation}/messages/1/reactions", user=1,
                        json={"emoji": "  "}),
        await rest.get("/poll", user=1, params={"cursor": "later"}),
    ):
        assert (reply.status, reply.code) == (400, "INVALID_PAYLOAD"), reply.body


async def test_a_body_that_is_not_json_is_invalid_payload(
    server: RunningServer, rest: Rest
) -> None:
    conversation = await server.conversation(1)
    reply = await rest.post(f"/conversations/{conversation}/messages", user=1,
                            data=b"{not json", headers={"Content-Type": "application/json"})
    assert (reply.status, reply.code) == (400, "INVALID_PAYLOAD")


async def test_a_body_over_max_payload_bytes_is_refused_with_413(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
    session: aiohttp.ClientSession,
) -> None:
    async with make_server(MAX_PAYLOAD_BYTES="2048") as server:
        rest = Rest(server, session)
        conversation = await server.conversation(1)
        reply = await rest.send(1, conversation, "x" * 3000, "big")
        assert (reply.status, reply.code) == (413, "INVALID_PAYLOAD")
        assert (await rest.send(1, conversation, "x" * 1000, "small")).status == 201


# -- receipts and reactions -------------------------------------------------------------


async def test_mark_read_announces_a_receipt_to_the_room_only_when_it_advances(
    server: RunningServer, rest: Rest
) -> None:
    conversation, (alice, _) = await room(server, 1, 2)
    sent = await rest.send(1, conversation, "read me", "r1")
    path = f"/conversations/{conversation}/read"
    assert (await rest.post(path, user=2, json={"messageId": sent.body["id"]})).body == {
        "advanced": True}
    [receipt] = await alice.wait_for("message:read-receipt")
    assert receipt["messageId"] == sent.body["id"]
    assert receipt["userId"] == 2 and receipt["conversationId"] == conversation
    again = await rest.post(path, user=2, json={"messageId": str(sent.body["id"])})
    assert again.body == {"advanced": False}
    missing = await rest.post(path, user=2, json={"messageId": sent.body["id"] + 1000})
    assert (missing.status, missing.code) == (404, "NOT_FOUND")
    assert len(alice.received("message:read-receipt")) == 1


async def test_a_reaction_toggles_and_is_announced_with_its_action(
    server: RunningServer, rest: Rest
) -> None:
    conversation, (alice, _) = await room(server, 1, 2)
    sent = await rest.send(1, conversation, "react", "e1")
    path = f"/conversations/{conversation}/messages/{sent.body['id']}/reactions"
    assert (await rest.post(path, user=2, json={"emoji": "🎉"})).body == {"action": "added"}
    assert (await rest.post(path, user=2, json={"emoji": "🎉"})).body == {"action": "removed"}
    events = await alice.wait_for("message:reaction", count=2)
    assert [e["action"] for e in events] == ["added", "removed"]
    assert events[0] == {"messageId": sent.body["id"], "emoji": "🎉", "userId": 2,
                         "conversationId": conversation, "action": "added"}
    elsewhere = await rest.post(
        f"/conversations/{conversation}/messages/{sent.body['id'] + 99}/reactions",
        user=2, json={"emoji": "🎉"},
    )
    assert (elsewhere.status, elsewhere.code) == (404, "NOT_FOUND")


# -- authentication, limits, the edges --------------------------------------------------


async def test_requests_without_a_valid_token_are_refused_with_401(rest: Rest) -> None:
    server = rest.server
    expired = server.token(1, ttl_s=-3600)
    wrong_secret = mint_token(
        Settings(jwt_secret="another-secret-another-secret-123"),
        server.clock, 1, "x", 60,
    )
    cases = {
        None: "UNAUTHENTICATED",
        f"Bearer {expired}": "TOKEN_EXPIRED",
        f"Bearer {wrong_secret}": "AUTH_FAILED",
        "Bearer not-a-jwt": "AUTH_FAILED",
        f"Basic {server.token(1)}": "AUTH_FAILED",
    }
    for header, code in cases.items():
        headers = {} if header is None else {"Authorization": header}
        for reply in (
            await rest.get("/conversations", headers=headers),
            await rest.get("/poll", headers=headers),
            await rest.post("/conversations/1/messages", headers=headers,
                            json={"messageId": "a", "text": "b"}),
        ):
            assert (reply.status, reply.code) == (401, code), header


async def test_a_token_expiring_is_told_apart_from_a_bad_one(rest: Rest) -> None:
    token = rest.server.token(1, ttl_s=60)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await rest.get("/conversations", headers=headers)).status == 200
    await rest.server.advance(60 + rest.server.settings.jwt_leeway_s + 1)
    reply = await rest.get("/conversations", headers=headers)
    assert (reply.status, reply.code) == (401, "TOKEN_EXPIRED")


async def test_sends_share_the_users_message_rate_limit_with_the_socket(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
    session: aiohttp.ClientSession,
) -> None:
    async with make_server(RATE_LIMIT_MESSAGES="1", RATE_LIMIT_EVENTS="0") as server:
        rest = Rest(server, session)
        conversation, (alice,) = await room(server, 1)
        ack = await alice.call("message:send",
                               {"conversationId": conversation, "text": "a", "messageId": "s1"})
        assert ack["ok"]
        assert (await rest.send(1, conversation, "b", "r1")).status == 201  # burst of 2
        refused = await rest.send(1, conversation, "c", "r2")
        assert (refused.status, refused.code) == (429, "RATE_LIMITED")
        assert refused.headers["Retry-After"] == "1"
        await server.advance(1)
        assert (await rest.send(1, conversation, "c", "r2")).status == 201


async def test_every_request_counts_against_the_users_event_rate(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
    session: aiohttp.ClientSession,
) -> None:
    async with make_server(RATE_LIMIT_EVENTS="2") as server:
        rest = Rest(server, session)
        statuses = [(await rest.get("/conversations", user=1)).status for _ in range(5)]
        assert statuses == [200, 200, 200, 200, 429]
        assert (await rest.get("/conversations", user=2)).status == 200  # per user


async def test_unknown_routes_and_methods_answer_in_the_error_shape(rest: Rest) -> None:
    missing = await rest.get("/nothing-here", user=1)
    assert (missing.status, missing.code) == (404, "NOT_FOUND")
    wrong_method = await rest.request("DELETE", USER_API + "/conversations", user=1)
    assert (wrong_method.status, wrong_method.code) == (405, "INVALID_PAYLOAD")


async def test_a_browser_on_an_allowed_origin_passes_the_cors_preflight(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
    session: aiohttp.ClientSession,
) -> None:
    async with make_server(CORS_ORIGINS="https://portal.example") as server:
        rest = Rest(server, session)
        preflight = await rest.request(
            "OPTIONS", USER_API + "/conversations",
            headers={"Origin": "https://portal.example",
                     "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization, content-type"},
        )
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://portal.example"
        assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
        listing = await rest.get("/conversations", user=1,
                                 headers={"Origin": "https://portal.example"})
        assert listing.headers["Access-Control-Allow-Origin"] == "https://portal.example"
        foreign = await rest.get("/conversations", user=1,
                                 headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in foreign.headers
