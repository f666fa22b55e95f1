"""Connection and authentication (PROTOCOL.md)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import jwt
import pytest
import socketio

from tests.support import ChatClient, RunningServer, errors_counted

SECRET = "test-secret-that-is-long-enough-for-production-use"
ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]


def forge(server: RunningServer, claims: dict[str, Any], key: str = SECRET,
          algorithm: str = "HS256") -> str:
    base = {"exp": int(server.clock.now()) + 3600}
    return jwt.encode({**base, **claims}, key, algorithm=algorithm)


async def refused(server: RunningServer, token: str) -> Any:
    """The CONNECT_ERROR packet's `data`: what socket.io-client shows as `err.data`."""
    client = ChatClient(server.url)
    server.clients.append(client)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(token=token)
    assert client.connect_error["message"] == client.connect_error["data"]["message"]
    return client.connect_error["data"]


async def test_handshake_token_gives_connected_then_authenticated(server: RunningServer) -> None:
    client = ChatClient(server.url)
    server.clients.append(client)
    await client.connect(token=server.token(7, "Grace"))
    await client.wait_for("authenticated")
    order = [name for name in client.sequence if name in ("connected", "authenticated")]
    assert order == ["connected", "authenticated"]
    [connected] = client.received("connected")
    assert connected["serverId"] == server.chat.server_id
    assert connected["timestamp"] == int(server.clock.now() * 1000)
    assert client.received("authenticated") == [{"userId": 7, "name": "Grace"}]


async def test_authorization_bearer_header_authenticates(server: RunningServer) -> None:
    client = ChatClient(server.url)
    server.clients.append(client)
    await client.connect(headers={"Authorization": f"Bearer {server.token(8, 'Hal')}"})
    [authenticated] = await client.wait_for("authenticated")
    assert authenticated == {"userId": 8, "name": "Hal"}


async def test_invalid_handshake_token_is_refused_with_auth_failed(server: RunningServer) -> None:
    data = await refused(server, "not-a-jwt")
    assert data["code"] == "AUTH_FAILED"
    assert data["message"]
    assert server.chat.sessions.count == 0


async def test_authenticate_event_authenticates_a_connected_socket(server: RunningServer) -> None:
    client = await server.client()
    reply = await client.call("authenticate", {"token": server.token(3, "Cy")})
    assert reply == {"ok": True, "userId": 3, "name": "Cy"}
    assert await client.wait_for("authenticated") == [{"userId": 3, "name": "Cy"}]


async def test_authenticate_with_bad_token_fails(server: RunningServer) -> None:
    client = await server.client()
    reply = await client.call("authenticate", {"token": "garbage"})
    assert reply["ok"] is False and reply["error"]["code"] == "AUTH_FAILED"
    [error] = await client.wait_for("error")
    assert error["code"] == "AUTH_FAILED" and error["event"] == "authenticate"


async def test_unauthenticated_socket_gets_unauthenticated(server: RunningServer) -> None:
    conversation = await server.conversation(1)
    client = await server.client()
    reply = await client.call("conversation:join", {"conversationId": conversation})
    assert reply["error"]["code"] == "UNAUTHENTICATED"
    [error] = await client.wait_for("error")
    assert error == {
        "code": "UNAUTHENTICATED", "message": error["message"], "event": "conversation:join"
    }


async def test_unauthenticated_socket_is_disconnected_after_auth_timeout(
    server: RunningServer,
) -> None:
    client = await server.client()
    await server.advance(9.9)
    assert client.sio.connected
    await server.advance(0.2)
    await client.wait_disconnected()
    assert server.chat.sessions.count == 0


async def test_fresh_token_for_same_user_extends_the_session(server: RunningServer) -> None:
    client = await server.client(5, "Eve")
    await server.advance(3000)
    reply = await client.call("authenticate", {"token": server.token(5, "Eve", ttl_s=3600)})
    assert reply["ok"]
    await server.advance(1000)  # past the first token's exp plus leeway
    assert client.received("error") == []
    conversation = await server.conversation(5)
    assert (await client.call("conversation:join", {"conversationId": conversation}))["ok"]


async def test_token_for_another_user_is_refused_on_authenticated_socket(
    server: RunningServer,
) -> None:
    client = await server.client(5, "Eve")
    reply = await client.call("authenticate", {"token": server.token(6, "Mallory")})
    assert reply["error"]["code"] == "AUTH_FAILED"
    session = server.chat.sessions.get(client.sio.get_sid())
    assert session is not None and session.actor().user_id == 5


async def test_token_expiry_mid_session_emits_token_expired(server: RunningServer) -> None:
    conversation = await server.conversation(5)
    client = ChatClient(server.url)
    server.clients.append(client)
    await client.connect(token=server.token(5, "Eve", ttl_s=60))
    await client.wait_for("authenticated")
    await server.advance(60 + 30 + 1)  # exp plus JWT_LEEWAY_S
    [error] = await client.wait_for("error")
    assert error["code"] == "TOKEN_EXPIRED" and error["event"] is None
    # Raised by the server, not by a client event, it is counted as every error is.
    assert errors_counted(server, "TOKEN_EXPIRED") == 1
    reply = await client.call("conversation:join", {"conversationId": conversation})
    assert reply["error"]["code"] == "UNAUTHENTICATED"
    assert (await client.call("authenticate", {"token": server.token(5, "Eve")}))["ok"]
    assert (await client.call("conversation:join", {"conversationId": conversation}))["ok"]


async def test_expired_socket_is_disconnected_without_fresh_token(server: RunningServer) -> None:
    client = ChatClient(server.url)
    server.clients.append(client)
    await client.connect(token=server.token(5, "Eve", ttl_s=60))
    await client.wait_for("authenticated")
    await server.advance(91)
    await client.wait_for("error")
    await server.advance(10.1)
    await client.wait_disconnected()


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"exp": 1_000}, "expired"),
        ({"nbf": 1_900_000_000}, "not yet valid"),
        ({"userId": None, "sub": None}, "no user"),
        ({"userId": "abc"}, "wrong type"),
        ({"userId": True}, "boolean"),
    ],
)
async def test_token_claims_are_checked(
    server: RunningServer, claims: dict[str, Any], why: str
) -> None:
    token = forge(server, {"userId": 1, **claims})
    assert (await refused(server, token))["code"] == "AUTH_FAILED", why


async def test_alg_none_is_refused(server: RunningServer) -> None:
    token = jwt.encode({"userId": 1, "exp": 2_000_000_000}, None, algorithm="none")
    assert (await refused(server, token))["code"] == "AUTH_FAILED"


async def test_token_signed_with_another_secret_is_refused(server: RunningServer) -> None:
    token = forge(server, {"userId": 1}, key="another-secret-another-secret-another")
    assert (await refused(server, token))["code"] == "AUTH_FAILED"


async def test_token_without_exp_is_refused_by_default(server: RunningServer) -> None:
    token = jwt.encode({"userId": 1}, SECRET, algorithm="HS256")
    assert (await refused(server, token))["code"] == "AUTH_FAILED"


async def test_token_without_exp_is_accepted_when_not_required(make_server: ServerFactory) -> None:
    async with make_server(JWT_REQUIRE_EXP="false") as server:
        client = ChatClient(server.url)
        server.clients.append(client)
        await client.connect(token=jwt.encode({"sub": "9", "name": "Ivy"}, SECRET))
        assert await client.wait_for("authenticated") == [{"userId": 9, "name": "Ivy"}]


async def test_user_id_claims_in_order_and_name_fallback(server: RunningServer) -> None:
    client = ChatClient(server.url)
    server.clients.append(client)
    await client.connect(token=forge(server, {"user_id": 12, "sub": "99", "username": "Jo"}))
    assert await client.wait_for("authenticated") == [{"userId": 12, "name": "Jo"}]
    other = ChatClient(server.url)
    server.clients.append(other)
    await other.connect(token=forge(server, {"sub": "13"}))
    assert await other.wait_for("authenticated") == [{"userId": 13, "name": "13"}]


async def test_issuer_and_audience_are_enforced_when_configured(
    make_server: ServerFactory,
) -> None:
    async with make_server(JWT_ISSUER="portal", JWT_AUDIENCE="chat") as server:
        good = forge(server, {"userId": 1, "iss": "portal", "aud": "chat"})
        client = ChatClient(server.url)
        server.clients.append(client)
        await client.connect(token=good)
        await client.wait_for("authenticated")
        wrong_iss = forge(server, {"userId": 1, "iss": "elsewhere", "aud": "chat"})
        assert (await refused(server, wrong_iss))["code"] == "AUTH_FAILED"
        wrong_aud = forge(server, {"userId": 1, "iss": "portal", "aud": "other"})
        assert (await refused(server, wrong_aud))["code"] == "AUTH_FAILED"


async def test_string_user_ids_when_configured(make_server: ServerFactory) -> None:
    async with make_server(USER_ID_TYPE="string") as server:
        client = await server.client("emp-0042", "Kim")
        assert client.received("authenticated") == [{"userId": "emp-0042", "name": "Kim"}]


@pytest.mark.parametrize("token", ["\ud800", "é" * 10, "x" * 9000, ""])
async def test_malformed_and_huge_tokens_are_refused_cleanly(
    server: RunningServer, token: str
) -> None:
    client = await server.client()
    reply = await client.call("authenticate", {"token": token})
    assert reply["error"]["code"] == "AUTH_FAILED"
    assert (await client.call("authenticate", {"token": server.token(1)}))["ok"]
