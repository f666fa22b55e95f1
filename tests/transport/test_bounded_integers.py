"""Integers past Python's 4,300-digit limit (issue 13, finding 7): int() of such a
digit string, str() of such an int and the stdlib JSON reader all raise
ValueError. Wherever a client supplies one (REST bodies and paths, socket
payloads, token claims) the answer is the documented refusal: 400 /
INVALID_PAYLOAD / AUTH_FAILED, no 500, no traceback, and a refused handshake
leaves no session behind (`/status` counts none)."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import jwt
import pytest
import socketio

from tests.support import WAIT_S, ChatClient, RunningServer, server_log_problems
from tests.transport.rest_support import Rest

pytestmark = pytest.mark.backends("sqlite")

SECRET = "test-secret-that-is-long-enough-for-production-use"
API_KEY = "k" * 40
HUGE = "7" * 5000  # digits: past sys.get_int_max_str_digits() (4300)


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert server_log_problems(caplog.records) == []


async def connected_clients(server: RunningServer, session: aiohttp.ClientSession) -> Any:
    async with session.get(server.url + "/status") as reply:
        return (await reply.json())["connectedClients"]


def token_naming(server: RunningServer, **claims: Any) -> str:
    base = {"exp": int(server.clock.now()) + 3600, "name": "Mallory"}
    return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")


async def test_rest_bodies_and_paths_with_huge_integers_are_answered_400(
    make_server: Any, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_server(API_KEY=API_KEY) as server:
        rest = Rest(server, session)
        conversation = await server.conversation(1)
        with caplog.at_level(logging.WARNING):
            replies = [
                await rest.post("/conversations", user=1, json={"members": [HUGE]}),
                await rest.post("/conversations", user=1,
                                data='{"members": [' + HUGE + "]}",
                                headers={"Content-Type": "application/json"}),
                await rest.send(1, conversation, "hi", HUGE),
                await rest.server_call("DELETE", f"/conversations/{conversation}/members/{HUGE}",
                                       API_KEY),
                await rest.server_call("POST", f"/conversations/{conversation}/members",
                                       API_KEY, json={"userId": HUGE}),
                await rest.server_call("POST", f"/conversations/{conversation}/messages",
                                       API_KEY, json={"messageId": "m", "text": "hi",
                                                      "userId": HUGE}),
                await rest.get(f"/conversations/{HUGE}/messages", user=1),
                await rest.get(f"/conversations/{conversation}/messages", user=1,
                               params={"since": HUGE}),
                await rest.get("/poll", user=1, params={"cursor": HUGE}),
            ]
        assert [(r.status, r.code) for r in replies] == [(400, "INVALID_PAYLOAD")] * len(replies)
        no_errors_logged(caplog)


@pytest.mark.parametrize("claim", ["userId", "sub"])
async def test_a_handshake_token_naming_a_huge_user_id_is_refused_and_leaves_no_session(
    server: RunningServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
    claim: str,
) -> None:
    client = ChatClient(server.url)
    server.clients.append(client)
    with caplog.at_level(logging.WARNING), pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(token=token_naming(server, **{claim: HUGE}))
    assert await connected_clients(server, session) == 0
    assert server.chat.sessions.count == 0
    assert client.connect_error["data"]["code"] == "AUTH_FAILED"
    no_errors_logged(caplog)


async def test_a_token_with_an_exp_too_large_for_a_float_is_refused(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = ChatClient(server.url)
    server.clients.append(client)
    with caplog.at_level(logging.WARNING), pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(token=token_naming(server, userId=5, exp=10**400))
    assert client.connect_error["data"]["code"] == "AUTH_FAILED"
    assert server.chat.sessions.count == 0
    no_errors_logged(caplog)


async def test_authenticate_with_a_huge_user_id_fails_and_the_socket_stays(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = await server.client()
    with caplog.at_level(logging.WARNING):
        reply = await client.call("authenticate", {"token": token_naming(server, sub=HUGE)})
    assert reply["error"]["code"] == "AUTH_FAILED"
    assert (await client.call("authenticate", {"token": server.token(5)}))["ok"]
    no_errors_logged(caplog)


async def test_socket_payloads_with_huge_integers_are_invalid_not_a_closed_connection(
    server: RunningServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """Raw frames: python's JSON writer cannot write such a number, a browser's can."""
    ws = await session.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket")
    assert (await ws.receive_str(timeout=WAIT_S)).startswith("0{")
    await ws.send_str("40" + json.dumps({"token": server.token(1)}))
    assert (await ws.receive_str(timeout=WAIT_S)).startswith("40{")
    payloads = [
        '{"conversationId":' + HUGE + "}",
        '{"conversationId":1,"messageId":' + HUGE + ',"text":"hi"}',
        '{"conversationId":1,"since":-' + HUGE + "}",
    ]
    events = ["conversation:join", "message:send", "conversation:join"]
    acks: dict[int, Any] = {}
    with caplog.at_level(logging.WARNING):
        for ack_id, (event, data) in enumerate(zip(events, payloads, strict=True), start=1):
            await ws.send_str(f'42{ack_id}["{event}",{data}]')
        while len(acks) < len(payloads):
            frame = await ws.receive_str(timeout=WAIT_S)
            if frame.startswith("43"):
                digits = len(frame) - len(frame[2:].lstrip("0123456789"))
                acks[int(frame[2:digits])] = json.loads(frame[digits:])[0]
    assert [acks[i]["error"]["code"] for i in sorted(acks)] == ["INVALID_PAYLOAD"] * 3
    assert not ws.closed and server.chat.sessions.count == 1
    await ws.close()
    assert server_log_problems(caplog.records, logging.WARNING) == []
