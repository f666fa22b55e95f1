"""Timers and key settings of PROTOCOL.md take effect when set."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import ChatClient, RunningServer
from tests.transport.conftest import room

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]


async def test_typing_timeout_ms_sets_when_typing_ends(make_server: ServerFactory) -> None:
    async with make_server(TYPING_TIMEOUT_MS="1500") as server:
        conversation, (alice, bob) = await room(server, 1, 2)
        await alice.call("typing:start", {"conversationId": conversation})
        await server.advance(1.4)
        assert len(bob.received("typing:indicator")) == 1
        await server.advance(0.2)
        assert (await bob.wait_for("typing:indicator", count=2))[-1]["isTyping"] is False


async def test_auth_timeout_ms_sets_when_anonymous_sockets_go(make_server: ServerFactory) -> None:
    async with make_server(AUTH_TIMEOUT_MS="500") as server:
        client = await server.client()
        await server.advance(0.4)
        assert client.sio.connected
        await server.advance(0.2)
        await client.wait_disconnected()


async def test_presence_grace_ms_sets_the_offline_delay(make_server: ServerFactory) -> None:
    async with make_server(PRESENCE_GRACE_MS="10000") as server:
        alice = await server.client(1)
        bob = await server.client(2)
        await server.disconnect(bob)
        await server.advance(9.9)
        assert alice.received("user:offline") == []
        await server.advance(0.2)
        await alice.wait_for("user:offline")


@pytest.fixture
def rsa_key(tmp_path: Path) -> tuple[bytes, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_path = tmp_path / "portal-public.pem"
    public_path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public_path


async def test_rs256_tokens_verify_with_jwt_public_key_path(
    make_server: ServerFactory, rsa_key: tuple[bytes, Path]
) -> None:
    private, public_path = rsa_key
    async with make_server(JWT_ALGORITHMS="RS256",
                           JWT_PUBLIC_KEY_PATH=str(public_path)) as server:
        token = jwt.encode({"sub": "31", "name": "Rae", "exp": int(server.clock.now()) + 60},
                           private, algorithm="RS256")
        client = ChatClient(server.url)
        server.clients.append(client)
        await client.connect(token=token)
        assert await client.wait_for("authenticated") == [{"userId": 31, "name": "Rae"}]
        # The shared secret's algorithm is not configured here.
        hs256 = jwt.encode({"sub": "31", "exp": int(server.clock.now()) + 60},
                           server.settings.effective_jwt_secret, algorithm="HS256")
        reply = await client.call("authenticate", {"token": hs256})
        assert reply["error"]["code"] == "AUTH_FAILED"


async def test_rs256_token_is_refused_by_an_hs256_server(
    server: RunningServer, rsa_key: tuple[bytes, Path]
) -> None:
    private, _ = rsa_key
    token = jwt.encode({"sub": "31", "exp": int(server.clock.now()) + 60}, private,
                       algorithm="RS256")
    client = await server.client()
    reply = await client.call("authenticate", {"token": token})
    assert reply["error"]["code"] == "AUTH_FAILED"
