"""End to end with Node's socket.io-client v4, the library the browser's ChatManager.js uses.

tests/e2e/node/flow.mjs drives two clients, Alice and Bob, against the real server
started in-process here, and reports every event, acknowledgement and lifecycle
event they saw; the assertions are made here. The server's clock is a ManualClock,
so when the flow needs time to pass (the presence grace period) the script asks
for it on stdout and waits for the test's reply on stdin.

Needs Node.js and npm: `npm install` runs in tests/e2e/node when node_modules is
missing or stale. Without them the tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.deploy.support import installing
from tests.needs import unavailable
from tests.support import RunningServer

StartServer = Callable[..., AbstractAsyncContextManager[RunningServer]]

pytestmark = pytest.mark.node

NODE_DIR = Path(__file__).parent / "node"
PACKAGE_JSON = NODE_DIR / "package.json"
NODE_MODULES = NODE_DIR / "node_modules"
FLOW_SCRIPT = NODE_DIR / "flow.mjs"

WAIT_MS = 5000  # every wait inside the script
SCRIPT_DEADLINE_MS = 15000  # the script reports what it has and exits after this
RUN_TIMEOUT_S = 20.0  # the test kills the script after this
EXIT_S = 1.0  # after its result, the script closes its clients and should be gone by then
NPM_INSTALL_TIMEOUT_S = 300

ALICE, BOB = 1, 2
TEXT = "hello Bob 👋 — ünïcödé, \"quotes\" and a\nnew line"
EMOJI = "👍"

Json = dict[str, Any]


# -- Node.js and the npm install -------------------------------------------------------------


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        reason = f"{tool} not found: the Node end-to-end tests need Node.js and npm on PATH"
        unavailable(reason)
    return path


def _pinned_version() -> str:
    package = json.loads(PACKAGE_JSON.read_text(encoding="utf-8"))
    version: str = package["dependencies"]["socket.io-client"]
    return version


def _installed_version() -> str | None:
    installed = NODE_MODULES / "socket.io-client" / "package.json"
    if not installed.is_file():
        return None
    version: str = json.loads(installed.read_text(encoding="utf-8"))["version"]
    return version


def _needs_install() -> bool:
    if not NODE_MODULES.is_dir() or _installed_version() is None:
        return True
    if PACKAGE_JSON.stat().st_mtime > NODE_MODULES.stat().st_mtime:
        return True
    return _installed_version() != _pinned_version()


def install_node_packages() -> None:
    """npm install in tests/e2e/node, unless what is installed is what is pinned."""
    npm_path = _require("npm")
    with installing():  # (one npm install at a time across the test workers)
        _install_if_needed(npm_path)
    installed = _installed_version()
    assert installed == _pinned_version(), f"socket.io-client {installed} is installed"


def _install_if_needed(npm_path: str) -> None:
    if _needs_install():
        # --no-package-lock: node_modules is git-ignored and a lockfile would be an
        # untracked file; socket.io-client itself is pinned exactly in package.json.
        done = subprocess.run(
            [npm_path, "install", "--no-audit", "--no-fund", "--no-package-lock"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_INSTALL_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm install failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        os.utime(NODE_MODULES)  # the stamp _needs_install compares package.json with


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable, with tests/e2e/node's packages installed."""
    node_path = _require("node")
    install_node_packages()
    return node_path


# -- running flow.mjs --------------------------------------------------------------------------


async def _until_sessions(server: RunningServer, count: int) -> None:
    """Wait until the server holds `count` sessions (a disconnect has been handled)."""
    step_s = 0.01
    for _ in range(int(WAIT_MS / 1000 / step_s)):
        if server.chat.sessions.count == count:
            return
        await asyncio.sleep(step_s)
    raise AssertionError(
        f"the server holds {server.chat.sessions.count} sessions, not {count}, "
        f"after {WAIT_MS} ms"
    )


async def run_script(node: str, server: RunningServer, config: Json) -> Json:
    """Run flow.mjs, serve its requests to advance the clock, and return its result.

    The result gets `exitS`: how long the script took to exit after reporting, as
    it closed its clients; None when it was still running after EXIT_S and killed.
    """
    config = {"url": server.url, "waitMs": WAIT_MS, "deadlineMs": SCRIPT_DEADLINE_MS, **config}
    process = await asyncio.create_subprocess_exec(
        node,
        str(FLOW_SCRIPT),
        json.dumps(config),
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    stderr = asyncio.ensure_future(process.stderr.read())
    result: Json | None = None
    exit_s: float | None = None
    timed_out = False
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            while result is None:
                line = await process.stdout.readline()
                if not line:
                    break
                message = json.loads(line)
                if message["type"] == "advance":
                    if message.get("untilSessions") is not None:
                        await _until_sessions(server, message["untilSessions"])
                    await server.advance(message["seconds"])
                    reply = {"type": "advanced", "id": message["id"]}
                    process.stdin.write(json.dumps(reply).encode() + b"\n")
                    await process.stdin.drain()
                elif message["type"] == "result":
                    result = message
    except TimeoutError:
        timed_out = True
    else:
        reported = asyncio.get_running_loop().time()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(EXIT_S):
                await process.wait()
                exit_s = asyncio.get_running_loop().time() - reported
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    errors = (await stderr).decode(errors="replace")
    assert not timed_out, f"flow.mjs was still running after {RUN_TIMEOUT_S} s:\n{errors}"
    assert result is not None, f"flow.mjs gave no result (exit {process.returncode}):\n{errors}"
    assert result["error"] is None and result["failedStep"] is None, (
        f"flow.mjs failed at step {result['failedStep']!r}: {result['error']}\n"
        f"stderr:\n{errors}\nresult:\n{json.dumps(result, indent=1, ensure_ascii=False)}"
    )
    assert exit_s is None or process.returncode == 0, (
        f"flow.mjs exited {process.returncode}:\n{errors}"
    )
    result["exitS"] = exit_s
    return result


def iso(epoch_ms: int) -> str:
    """ISO-8601 UTC with milliseconds, written independently of the server's formatter."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def names(client: Json) -> list[str]:
    return [entry["event"] for entry in client["events"]]


def received(client: Json, event: str) -> list[Any]:
    return [entry["data"] for entry in client["events"] if entry["event"] == event]


def replies(client: Json, event: str) -> list[Any]:
    return [entry["reply"] for entry in client["acks"] if entry["event"] == event]


def by_user(users: list[Json]) -> list[Json]:
    return sorted(users, key=lambda user: user["userId"])


def without_ok(reply: Json) -> Json:
    return {key: value for key, value in reply.items() if key != "ok"}


# -- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transports", "message_id"),
    [
        pytest.param(["websocket"], "ws-1", id="websocket"),
        pytest.param(["polling"], "polling-1", id="polling"),
        # A browser client may number its messages (Date.now(), a counter).
        pytest.param(["websocket"], 1_800_000_000_123, id="websocket-numeric-message-id"),
    ],
)
async def test_two_browsers_chat_through_socket_io_client(
    node: str, make_server: StartServer, transports: list[str], message_id: str | int
) -> None:
    async with make_server() as server:
        await _chat(node, server, transports, message_id)


async def _chat(
    node: str, server: RunningServer, transports: list[str], message_id: str | int
) -> None:
    conversation = await server.conversation(ALICE, BOB)
    start_ms = int(server.clock.now() * 1000)
    grace_s = server.settings.presence_grace_ms / 1000
    result = await run_script(node, server, {
        "scenario": "flow",
        "transports": transports,
        "tokens": {"alice": server.token(ALICE, "Alice"), "bob": server.token(BOB, "Bob")},
        "conversationId": conversation,
        "message": {"messageId": message_id, "text": TEXT},
        "emoji": EMOJI,
        "advance": {"withinGraceS": grace_s - 0.1, "pastGraceS": 0.2},
    })
    alice, bob = result["clients"]["alice"], result["clients"]["bob"]
    [transport] = transports

    # The run stayed on the transport it asked for, from the handshake to the end.
    for client in (alice, bob):
        assert client["lifecycle"][0] == {
            "seq": client["lifecycle"][0]["seq"], "event": "connect",
            "data": {"transport": transport},
        }
        assert client["upgrades"] == []
    assert alice["transport"] == transport
    assert result["bobTransportAtEnd"] == transport

    # Everything each one received, in order: events caused by a socket never come
    # back to it, and nothing else arrived (no error, no stray event).
    assert names(alice) == [
        "connected", "authenticated", "user:online", "user:joined", "message:ack",
        "message:read-receipt", "message:reaction", "user:offline",
    ]
    assert names(bob) == [
        "connected", "error", "authenticated", "message:new", "typing:indicator",
        "typing:indicator",
    ]

    # connected, then authenticated: in the handshake (Alice) ...
    greeting = {"serverId": server.chat.server_id, "timestamp": start_ms}
    assert received(alice, "connected") == [greeting]
    assert received(alice, "authenticated") == [{"userId": ALICE, "name": "Alice"}]
    # ... and with the authenticate event (Bob), refused anything before it.
    assert received(bob, "connected") == [greeting]
    [refused] = replies(bob, "presence:request")[:1]
    assert refused == {
        "ok": False, "error": {"code": "UNAUTHENTICATED", "message": refused["error"]["message"]},
    }
    assert received(bob, "error") == [{**refused["error"], "event": "presence:request"}]
    assert replies(bob, "authenticate") == [{"ok": True, "userId": BOB, "name": "Bob"}]
    assert received(bob, "authenticated") == [{"userId": BOB, "name": "Bob"}]
    assert received(alice, "user:online") == [{"userId": BOB, "name": "Bob"}]

    # conversation:join
    [alice_join] = replies(alice, "conversation:join")
    [bob_join] = replies(bob, "conversation:join")
    for join in (alice_join, bob_join):
        assert join == {
            "ok": True, "conversationId": conversation, "onlineUserIds": join["onlineUserIds"],
            "reads": [],  # nobody has read anything yet
            "members": [{"userId": ALICE, "name": "Alice", "role": join["members"][0]["role"]},
                        {"userId": BOB, "name": "Bob", "role": "member"}],
            "pinned": [], "cursor": join["cursor"],
        }
        assert sorted(join["onlineUserIds"]) == [ALICE, BOB]
    assert received(alice, "user:joined") == [{"userId": BOB, "conversationId": conversation}]

    # message:send: the ack callback, the message:ack event, Bob's message:new.
    [sent] = replies(alice, "message:send")
    server_id = sent.get("id")
    assert isinstance(server_id, int) and server_id > 0
    assert sent == {
        "ok": True, "messageId": message_id, "status": "sent", "id": server_id,
        "conversationId": conversation, "createdAt": iso(start_ms),
    }
    assert received(alice, "message:ack") == [without_ok(sent)]
    assert received(bob, "message:new") == [{
        "id": server_id, "messageId": message_id, "conversationId": conversation,
        "userId": ALICE, "senderName": "Alice", "text": TEXT, "createdAt": iso(start_ms),
    }]
    stored = await server.chat.storage.messages.messages_after(conversation, 0, 10)
    assert [(message.id, message.text) for message in stored] == [(server_id, TEXT)]

    # typing:start, typing:stop
    assert received(bob, "typing:indicator") == [
        {"userId": ALICE, "conversationId": conversation, "isTyping": True},
        {"userId": ALICE, "conversationId": conversation, "isTyping": False},
    ]

    # message:read by Bob -> Alice's read receipt
    assert replies(bob, "message:read") == [{"ok": True, "advanced": True}]
    assert received(alice, "message:read-receipt") == [{
        "messageId": server_id, "userId": BOB, "conversationId": conversation,
        "readAt": iso(start_ms),
    }]

    # message:react by Bob -> Alice's reaction, 'added'
    assert replies(bob, "message:react") == [{"ok": True, "action": "added"}]
    assert received(alice, "message:reaction") == [{
        "messageId": server_id, "emoji": EMOJI, "userId": BOB,
        "conversationId": conversation, "action": "added",
    }]

    # presence:request, with a conversation and with no data at all: answered once,
    # in the ack the client asked for (no presence:list event, names() above)
    everyone = [{"userId": ALICE, "name": "Alice"}, {"userId": BOB, "name": "Bob"}]
    alice_presence = replies(alice, "presence:request")
    bob_presence = replies(bob, "presence:request")[1:]
    assert len(alice_presence) == 2 and len(bob_presence) == 1
    for reply in (alice_presence[0], bob_presence[0]):
        assert reply == {"ok": True, "users": reply["users"], "count": 2, "truncated": False}
        assert by_user(reply["users"]) == everyone

    # Bob leaves: within the grace period he still counts as online and no
    # user:offline is sent; once it is over, Alice gets user:offline.
    assert bob["lifecycle"][-1]["data"] == {"reason": "io client disconnect"}
    assert result["offlineWithinGrace"] == 0
    assert by_user(alice_presence[1]["users"]) == everyone
    # lastSeen is when Bob's connection closed (the clock had not moved), not when
    # the grace period ran out.
    assert received(alice, "user:offline") == [{"userId": BOB, "lastSeen": iso(start_ms)}]


TRANSPORTS = [pytest.param(["websocket"], id="websocket"), pytest.param(["polling"], id="polling")]


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_a_refused_token_gives_connect_error_auth_failed(
    node: str, make_server: StartServer, transports: list[str]
) -> None:
    async with make_server() as server:
        now = int(server.clock.now())
        claims = {"sub": str(ALICE), "name": "Alice", "exp": now + 3600}
        bad_tokens = {
            "garbage": "not-a-jwt",
            "wrong-secret": jwt.encode(claims, "another-secret-" * 4, algorithm="HS256"),
            "alg-none": jwt.encode(claims, "", algorithm="none"),
            "expired": server.token(ALICE, "Alice", ttl_s=-3600),
        }
        result = await run_script(node, server, {
            "scenario": "refused",
            "transports": transports,
            "badTokens": bad_tokens,
            "tokens": {"alice": server.token(ALICE, "Alice")},
        })

    for label in bad_tokens:
        client = result["clients"][label]
        [error] = client["lifecycle"]
        assert error["event"] == "connect_error", label
        data = error["data"]["data"]
        assert data == {"code": "AUTH_FAILED", "message": data["message"]}, label
        assert isinstance(data["message"], str) and data["message"], label
        assert error["data"]["message"] == data["message"], label
        # Refused for good: no reconnecting, no connection, nothing sent to it.
        assert error["data"]["active"] is False, label
        assert client["connected"] is False, label
        assert client["events"] == [], label

    # The same server still takes a valid token, on the same transport (and, the
    # script checked, holds no session for the refused sockets).
    alice = result["clients"]["alice"]
    assert alice["transport"] == transports[0]
    assert names(alice) == ["connected", "authenticated"]


@pytest.mark.parametrize(
    "transports",
    [
        pytest.param(["websocket"], id="websocket"),
        pytest.param(["polling"], id="polling"),
    ],
)
async def test_a_disconnecting_client_is_let_go_at_once(
    node: str, make_server: StartServer, transports: list[str]
) -> None:
    """socket.disconnect() leaves nothing open: the Node process exits at once, as it
    does against a Node.js socket.io server. A browser would otherwise keep one of its
    few connections per host busy with the dead long-poll."""
    async with make_server() as server:
        result = await run_script(node, server, {
            "scenario": "connect",
            "transports": transports,
            "tokens": {"alice": server.token(ALICE, "Alice")},
        })
        assert names(result["clients"]["alice"]) == ["connected", "authenticated"]
        await _until_sessions(server, 0)
    assert result["exitS"] is not None, f"the client was still running {EXIT_S} s after closing"
