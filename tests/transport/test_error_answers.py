"""One error translation for both transports (services/error_reports.py,
transport/http_errors.py): the same failure answers the same code and message
over the socket and REST, every HTTP error has one shape, and every error
answer is counted in ecigdis_ws_errors_total, the server's own included
(TOKEN_EXPIRED: tests/transport/test_auth.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp

from tests.support import RunningServer, errors_counted
from tests.transport.rest_support import Rest

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]


async def test_a_send_refused_answers_alike_on_the_socket_and_over_rest(
    server: RunningServer,
) -> None:
    conversation = await server.conversation(1)  # user 2 is not a member
    client = await server.client(2, "Bob")
    reply = await client.call(
        "message:send", {"conversationId": conversation, "messageId": "s1", "text": "hi"}
    )
    [event] = client.received("error")
    async with aiohttp.ClientSession() as http:
        answer = await Rest(server, http).send(2, conversation, "hi", "r1")

    assert answer.status == 403
    assert reply["error"] == answer.body["error"] == {
        "code": "FORBIDDEN", "message": reply["error"]["message"]
    }
    assert event == {**reply["error"], "event": "message:send"}
    assert errors_counted(server, "FORBIDDEN") == 2


async def test_a_revoked_users_sockets_are_told_through_the_same_path(
    server: RunningServer,
) -> None:
    client = await server.client(5, "Eve")
    await server.chat.sessions.end_user_sessions(5)

    [error] = await client.wait_for("error")
    assert error == {"code": "AUTH_FAILED", "message": "token revoked", "event": None}
    assert errors_counted(server, "AUTH_FAILED") == 1


async def test_refusals_in_front_of_engine_io_have_the_rest_shape_and_are_counted(
    make_server: ServerFactory,
) -> None:
    async with make_server(CORS_ORIGINS="https://portal.example") as server, \
            aiohttp.ClientSession() as http:
        poll = server.url + "/socket.io/?EIO=4&transport=polling"
        async with http.get(poll, headers={"Origin": "https://evil.example"}) as foreign:
            assert foreign.status == 403
            assert (await foreign.json())["error"]["code"] == "FORBIDDEN"
        async with http.get(poll) as handshake:
            sid = json.loads((await handshake.text())[1:])["sid"]
        async with http.post(
            poll + f"&sid={sid}", data=b"40", headers={"Content-Encoding": "gzip"}
        ) as compressed:
            assert compressed.status == 415
            assert await compressed.json() == {"error": {
                "code": "INVALID_PAYLOAD", "message": "compressed request bodies are not accepted"
            }}
        async with http.get(server.url + "/api/messenger/nowhere") as unknown:
            assert unknown.status == 404
            assert (await unknown.json())["error"]["code"] == "NOT_FOUND"

        assert errors_counted(server, "FORBIDDEN") == 1
        assert errors_counted(server, "INVALID_PAYLOAD") == 1
        assert errors_counted(server, "NOT_FOUND") == 1
