"""AUTH_VERIFY_URL: the main site decides tokens the JWT check cannot; it being
down never hangs a connection nor affects tokens that verify locally."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import jwt
import pytest
import socketio

from tests.main_site import MainSite, main_site_running
from tests.support import ChatClient, RunningServer

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]
TIMEOUT_MS = 400


@pytest.fixture
async def main_site() -> AsyncIterator[MainSite]:
    async with main_site_running() as site:
        yield site


def start(make_server: ServerFactory, site: MainSite) -> AbstractAsyncContextManager[
    RunningServer
]:
    return make_server(AUTH_VERIFY_URL=site.url, AUTH_VERIFY_TIMEOUT_MS=str(TIMEOUT_MS))


async def connect(server: RunningServer, token: str) -> ChatClient:
    client = ChatClient(server.url)
    server.clients.append(client)
    await client.connect(token=token)
    return client


async def refused(server: RunningServer, token: str) -> Any:
    client = ChatClient(server.url)
    server.clients.append(client)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(token=token)
    return client.connect_error["data"]


async def test_opaque_token_is_verified_by_the_main_site_and_cached(
    make_server: ServerFactory, main_site: MainSite
) -> None:
    main_site.answers["sess-abc"] = (200, {"valid": True, "userId": 42, "name": "Alice"})
    async with start(make_server, main_site) as server:
        first = await connect(server, "sess-abc")
        assert await first.wait_for("authenticated") == [{"userId": 42, "name": "Alice"}]
        second = await connect(server, "sess-abc")
        await second.wait_for("authenticated")
        assert main_site.asked == ["sess-abc"]


async def test_jwt_of_an_algorithm_without_a_key_goes_to_the_main_site(
    make_server: ServerFactory, main_site: MainSite
) -> None:
    token = jwt.encode({"sub": "5"}, "k" * 64, algorithm="HS512")  # not configured here
    main_site.answers[token] = (200, {"valid": True, "userId": 5, "name": "Eve"})
    async with start(make_server, main_site) as server:
        client = await connect(server, token)
        assert await client.wait_for("authenticated") == [{"userId": 5, "name": "Eve"}]


async def test_a_bad_signature_is_decided_locally_without_asking(
    make_server: ServerFactory, main_site: MainSite
) -> None:
    async with start(make_server, main_site) as server:
        forged = jwt.encode({"sub": "1", "exp": int(server.clock.now()) + 60}, "x" * 40)
        assert (await refused(server, forged))["code"] == "AUTH_FAILED"
        assert main_site.asked == []


async def test_an_unknown_token_is_refused(
    make_server: ServerFactory, main_site: MainSite
) -> None:
    async with start(make_server, main_site) as server:
        assert (await refused(server, "sess-unknown"))["code"] == "AUTH_FAILED"


async def test_a_hanging_main_site_is_given_up_on_within_the_timeout(
    make_server: ServerFactory, main_site: MainSite
) -> None:
    main_site.may_answer.clear()
    async with start(make_server, main_site) as server:
        started = time.monotonic()
        assert (await refused(server, "sess-slow"))["code"] == "AUTH_FAILED"
        assert time.monotonic() - started < TIMEOUT_MS / 1000 + 1.0


async def test_with_the_main_site_down_local_tokens_still_work(
    make_server: ServerFactory, main_site: MainSite
) -> None:
    main_site.url = "http://127.0.0.1:9/verify"  # nothing listens on the discard port
    async with start(make_server, main_site) as server:
        started = time.monotonic()
        assert (await refused(server, "sess-abc"))["code"] == "AUTH_FAILED"
        assert time.monotonic() - started < TIMEOUT_MS / 1000 + 1.0
        client = await connect(server, server.token(3, "Cy"))
        assert await client.wait_for("authenticated") == [{"userId": 3, "name": "Cy"}]


async def test_a_revocation_answer_ends_the_users_sessions(
    make_server: ServerFactory, main_site: MainSite
) -> None:
    main_site.answers["sess-old"] = (200, {"valid": True, "userId": 7, "name": "Gus"})
    main_site.answers["sess-stolen"] = (200, {"valid": False, "revoked": True, "userId": 7})
    async with start(make_server, main_site) as server:
        victim = await connect(server, "sess-old")
        await victim.wait_for("authenticated")
        bystander = await connect(server, server.token(8, "Hal"))
        assert (await refused(server, "sess-stolen"))["code"] == "AUTH_FAILED"
        await victim.wait_disconnected()
        [error] = await victim.wait_for("error")
        assert error == {"code": "AUTH_FAILED", "message": "token revoked", "event": None}
        assert bystander.sio.connected
