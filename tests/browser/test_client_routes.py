"""The HTTP side of the browser client: DEMO_PAGE, POST /dev/token, /client/chat-manager.js.

In-process servers (tests/support.py), on both database backends; no browser needed.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ecigdis_ws.services.dev_accounts import DEMO_USER_ID_BASE
from ecigdis_ws.settings import SettingsError, load_settings
from ecigdis_ws.transport import client_routes
from tests.support import ChatClient, RunningServer
from tests.support import test_settings as settings_for

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]


async def request(
    server: RunningServer, method: str, path: str, **kwargs: Any
) -> tuple[int, Any, str, str]:
    async with aiohttp.ClientSession() as http, http.request(
        method, server.url + path, **kwargs
    ) as response:
        text = await response.text()
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body, text, response.content_type


def test_demo_page_setting_is_auto_on_only_in_development(tmp_path: Path) -> None:
    # `make run` starts with no settings at all: NODE_ENV defaults to development.
    assert load_settings({}, dotenv_path=None).serves_demo_page is True
    assert settings_for(tmp_path, NODE_ENV="development").serves_demo_page is True
    assert settings_for(tmp_path, NODE_ENV="production").serves_demo_page is False
    assert settings_for(tmp_path, NODE_ENV="test").serves_demo_page is False
    assert settings_for(tmp_path, NODE_ENV="production", DEMO_PAGE="true").serves_demo_page
    assert not settings_for(tmp_path, NODE_ENV="development", DEMO_PAGE="false").serves_demo_page


def test_demo_page_setting_refuses_other_values() -> None:
    with pytest.raises(SettingsError, match="DEMO_PAGE='maybe': expected auto, true or false"):
        load_settings({"DEMO_PAGE": "maybe"}, dotenv_path=None)


async def test_the_demo_page_and_dev_token_are_served_in_development(
    make_server: ServerFactory,
) -> None:
    async with make_server(NODE_ENV="development") as server:
        status, _, html, content_type = await request(server, "GET", "/")
        assert (status, content_type) == (200, "text/html")
        assert '<script type="module" src="/demo/demo.js">' in html
        status, _, script, _ = await request(server, "GET", "/demo/demo.js")
        assert status == 200 and "from '/client/chat-manager.js'" in script
        status, body, _, _ = await request(server, "POST", "/dev/token", json={"name": "Alice"})
        assert status == 200 and body["name"] == "Alice"


async def test_production_serves_neither_the_demo_page_nor_dev_token(
    make_server: ServerFactory,
) -> None:
    async with make_server(NODE_ENV="production") as server:
        assert (await request(server, "GET", "/"))[0] == 404
        assert (await request(server, "GET", "/demo/demo.js"))[0] == 404
        status, *_ = await request(server, "POST", "/dev/token", json={"name": "Alice"})
        assert status == 404


async def test_demo_page_true_outside_development_serves_the_page_but_no_dev_token(
    make_server: ServerFactory,
) -> None:
    async with make_server(NODE_ENV="test", DEMO_PAGE="true") as server:
        assert (await request(server, "GET", "/"))[0] == 200
        status, *_ = await request(server, "POST", "/dev/token", json={"name": "Alice"})
        assert status == 404


async def test_dev_token_names_one_user_per_name_whatever_its_case_in_the_lobby(
    make_server: ServerFactory,
) -> None:
    async with make_server(NODE_ENV="development") as server:
        _, first, _, _ = await request(server, "POST", "/dev/token", json={"name": "Alice"})
        _, again, _, _ = await request(server, "POST", "/dev/token", json={"name": " ALICE "})
        _, bob, _, _ = await request(server, "POST", "/dev/token", json={"name": "Bob"})
        assert first["userId"] == again["userId"] != bob["userId"]
        assert DEMO_USER_ID_BASE <= first["userId"] < 2**53  # exact in JavaScript
        lobby = first["lobby"]["conversationId"]
        assert first["lobby"] == again["lobby"] == bob["lobby"] == {
            "conversationId": lobby, "title": "Lobby"}
        assert first["expiresIn"] == 3600
        # Signing in made each of them a member of the lobby, once.
        members = await server.chat.storage.conversations.member_ids(lobby)
        assert sorted(members) == sorted([first["userId"], bob["userId"]])


async def test_a_dev_token_authenticates_a_socket_that_may_join_the_lobby(
    make_server: ServerFactory,
) -> None:
    async with make_server(NODE_ENV="development") as server:
        _, login, _, _ = await request(
            server, "POST", "/dev/token", json={"name": "Zoë", "ttlS": 60}
        )
        assert login["expiresIn"] == 60
        client = ChatClient(server.url)
        server.clients.append(client)
        await client.connect(token=login["token"])
        [authenticated] = await client.wait_for("authenticated")
        assert authenticated == {"userId": login["userId"], "name": "Zoë"}
        lobby = login["lobby"]["conversationId"]
        reply = await client.call("conversation:join", {"conversationId": lobby})
        assert reply["ok"] is True


async def test_dev_token_with_string_user_ids_uses_the_case_folded_name(
    make_server: ServerFactory,
) -> None:
    async with make_server(NODE_ENV="development", USER_ID_TYPE="string") as server:
        status, body, _, _ = await request(server, "POST", "/dev/token", json={"name": "Alice"})
        assert status == 200 and body["userId"] == "alice"


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        pytest.param({"name": ""}, "name must be 1-40", id="empty"),
        pytest.param({"name": "   "}, "name must be 1-40", id="blank"),
        pytest.param({"name": "x" * 41}, "name must be 1-40", id="too-long"),
        pytest.param({"name": "a\nb"}, "name must be 1-40", id="control-character"),
        pytest.param({"name": 7}, "name must be a string", id="not-a-string"),
        pytest.param({}, "name must be a string", id="missing"),
        pytest.param({"name": "Al", "ttlS": 0}, "ttlS must be an integer", id="ttl-zero"),
        pytest.param({"name": "Al", "ttlS": True}, "ttlS must be an integer", id="ttl-bool"),
        pytest.param({"name": "Al", "ttlS": 86401}, "ttlS must be an integer", id="ttl-too-long"),
        pytest.param(["Alice"], "expected { name, ttlS? }", id="not-an-object"),
    ],
)
@pytest.mark.backends("sqlite")  # input checks, before any storage
async def test_dev_token_refuses_bad_input_with_invalid_payload(
    make_server: ServerFactory, payload: Any, why: str
) -> None:
    async with make_server(NODE_ENV="development") as server:
        status, body, _, _ = await request(server, "POST", "/dev/token", json=payload)
        assert status == 400
        assert body["error"]["code"] == "INVALID_PAYLOAD" and why in body["error"]["message"]


@pytest.mark.backends("sqlite")
async def test_dev_token_refuses_a_body_that_is_not_json(make_server: ServerFactory) -> None:
    async with make_server(NODE_ENV="development") as server:
        status, body, _, _ = await request(server, "POST", "/dev/token", data=b"name=Alice")
        assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD"
        status, body, _, _ = await request(server, "POST", "/dev/token", data=b"x" * 2000)
        assert status == 413 and body["error"]["code"] == "INVALID_PAYLOAD"


@pytest.mark.backends("sqlite")
async def test_the_client_bundle_route_says_to_run_make_client_when_it_is_not_built(
    make_server: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty build folder stands for a checkout where `make client` never ran.
    monkeypatch.setattr(client_routes, "BUILD_DIR", tmp_path / "no-build")
    async with make_server() as server:
        status, _, text, content_type = await request(server, "GET", "/client/chat-manager.js")
        assert (status, content_type) == (404, "text/plain")
        assert "run `make client`" in text.lower()
        # The server itself works without it.
        assert (await request(server, "GET", "/health"))[0] == 200


@pytest.mark.backends("sqlite")
async def test_the_client_bundle_is_served_as_javascript_and_nothing_else_from_build(
    make_server: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = tmp_path / "build"
    build.mkdir()
    (build / "chat-manager.js").write_text("export class ChatManager {}\n")
    (build / "secret.txt").write_text("not for the browser\n")
    monkeypatch.setattr(client_routes, "BUILD_DIR", build)
    async with make_server() as server:
        status, _, text, content_type = await request(server, "GET", "/client/chat-manager.js")
        assert (status, content_type, text) == (200, "text/javascript",
                                                "export class ChatManager {}\n")
        assert (await request(server, "GET", "/client/secret.txt"))[0] == 404
        assert (await request(server, "GET", "/client/..%2Fsecret.txt"))[0] == 404
