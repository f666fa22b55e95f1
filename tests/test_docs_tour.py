"""README.md's tour and QUICK_START.md's chat replayed as printed, on a fresh database,
before and after someone signs in on the demo page.

The commands and the Python snippet are read from the documents themselves: the
fenced block after each `<!-- replayed by tests/test_docs_tour.py: NAME -->` marker,
so the docs cannot drift from what this test runs. They run as a reader runs them:
bash in a folder laid out like a clone (`ecigdis-ws/.venv` is the virtualenv running
the tests), against `ecigdis-ws migrate` then `serve` started in that clone with no
settings at all, the defaults `make run` has (development, ./data/ecigdis-ws.db,
the development JWT secret). Two things are replaced, both on purpose: the docs'
`localhost:8080` by the test server's free port, and `/tmp/` by the test's own
folder, so that runs side by side share no file.

The demo's side goes through its real HTTP and socket flow: `POST /dev/token`, a
Socket.IO client joining the Lobby and sending, and the REST list of conversations
the page shows.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from tests.support import free_port

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
MARKER = re.compile(
    r"<!-- replayed by tests/test_docs_tour\.py: (?P<name>[\w.-]+) -->\n"
    r"```(?P<language>\w+)\n(?P<body>.*?)\n```\n",
    re.DOTALL,
)
DOCS_PORT = "localhost:8080"
COMMAND_TIMEOUT_S = 60
SERVER_UP_TIMEOUT_S = 15
SERVER_STOP_TIMEOUT_S = 10
LINE_TIMEOUT_S = 15  # a terminal printing the line a reader waits for


def blocks(document: str) -> dict[str, str]:
    """The marked blocks of a document, by name."""
    found = {m["name"]: m["body"] + "\n" for m in MARKER.finditer((REPO / document).read_text())}
    assert found, f"no replayed block in {document}"
    return found


def test_the_docs_mark_every_block_this_test_replays() -> None:
    assert sorted(blocks("README.md")) == ["readme-hello", "readme-hello-run", "readme-tour"]
    assert sorted(blocks("QUICK_START.md")) == [
        "quick-start-alice", "quick-start-bob", "quick-start-client", "quick-start-create"]


@dataclass
class Reader:
    """A reader's machine: a clone's folder (with the virtualenv) and a server in it."""

    home: Path
    port: int

    @property
    def clone(self) -> Path:
        return self.home / "ecigdis-ws"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """A shell with nothing set but PATH: no JWT_SECRET, no DATABASE_URL."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
               "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}
        if "PYTHONPATH" in os.environ:  # PYTHONPATH=src: a clone's code, not the venv's
            paths = os.environ["PYTHONPATH"].split(os.pathsep)
            env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(path) for path in paths)
        return env

    def as_printed(self, text: str) -> str:
        return text.replace(DOCS_PORT, f"127.0.0.1:{self.port}").replace("/tmp/", f"{self.home}/")

    def bash(self, script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", self.as_printed(script)], cwd=cwd, env=self.env(),
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                              check=False)

    async def terminal(self, script: str) -> Terminal:
        """A terminal opened in the folder holding the clone, running `script`.

        Python writes to a terminal a line at a time but buffers a pipe, which this
        is: PYTHONUNBUFFERED gives the pipe the terminal's behaviour."""
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", self.as_printed(script), cwd=self.home,
            env={**self.env(), "PYTHONUNBUFFERED": "1"},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        return Terminal(process)


@dataclass
class Terminal:
    process: asyncio.subprocess.Process

    async def line(self) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(LINE_TIMEOUT_S):
            raw = await self.process.stdout.readline()
        if not raw:
            raise AssertionError(f"the terminal ended: {await self.stderr()}")
        return raw.decode().rstrip("\n")

    async def expect(self, *lines: str) -> None:
        for expected in lines:
            assert await self.line() == expected

    async def type(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        return (await self.process.stderr.read()).decode(errors="replace")

    async def end(self) -> None:
        """Ctrl-D: end of input; the client disconnects and exits 0."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            code = await self.process.wait()
        assert code == 0, await self.stderr()


@contextmanager
def reader_with_server(tmp_path: Path) -> Iterator[Reader]:
    """`make run`'s last two steps in a fresh clone's folder: migrate, then serve."""
    reader = Reader(tmp_path, free_port())
    reader.clone.mkdir()
    (reader.clone / ".venv").symlink_to(VENV)
    migrated = reader.bash(".venv/bin/ecigdis-ws migrate", reader.clone)
    assert migrated.returncode == 0, migrated.stderr
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [".venv/bin/ecigdis-ws", "serve", "--host", "127.0.0.1", "--port", str(reader.port)],
        cwd=reader.clone, env=reader.env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(reader, server)
        yield reader
    finally:
        server.terminate()
        try:
            server.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def wait_until_up(reader: Reader, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, (reader.home / "server.log").read_text()
        try:
            with urllib.request.urlopen(f"{reader.url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"/health did not answer:\n{(reader.home / 'server.log').read_text()}")


# -- the README's tour ------------------------------------------------------------------------


def readme_tour(reader: Reader) -> int:
    """The tour's commands, the snippet saved where the README says and run as it says,
    all in one terminal opened in the clone; returns the conversation it created."""
    readme = blocks("README.md")
    # "save this as /tmp/hello.py"
    (reader.home / "hello.py").write_text(reader.as_printed(readme["readme-hello"]))
    done = reader.bash(readme["readme-tour"] + readme["readme-hello-run"], reader.clone)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    printed_id, health, *printed = done.stdout.splitlines()
    conversation = int(printed_id)
    assert json.loads(health)["status"] == "ok"
    # The snippet prints every event ("connected {...}") and the two answers.
    joined, sent = [line for line in printed if line.startswith("{")]
    assert joined.startswith(f"{{'ok': True, 'conversationId': {conversation},"), joined
    assert sent.startswith("{'ok': True, 'messageId': 'm-1', 'status': 'sent'"), sent
    assert f"'conversationId': {conversation}" in sent
    assert "authenticated {'userId': 1, 'name': 'Alice'}" in printed
    return conversation


# -- QUICK_START's chat between two terminals ---------------------------------------------------


async def quick_start_chat(reader: Reader) -> int:
    """Terminal 2 (sections 2 to 4) is Alice, terminal 3 (section 5) Bob; they chat."""
    quick = blocks("QUICK_START.md")
    alice = await reader.terminal(
        quick["quick-start-create"] + quick["quick-start-client"] + quick["quick-start-alice"])
    conversation = int(await alice.line())  # what `conversation create | tee` printed
    await alice.expect("* signed in as Alice (user 1)",
                       f"* joined conversation {conversation}, online: [1]")
    bob = await reader.terminal(quick["quick-start-bob"])
    await bob.expect("* signed in as Bob (user 2)",
                     f"* joined conversation {conversation}, online: [1, 2]")
    await alice.expect("* user 2 joined")
    await alice.type("hello Bob 👋")
    await bob.expect("Alice: hello Bob 👋")
    await bob.type("hi Alice")
    await alice.expect("Bob: hi Alice")
    await alice.end()
    await bob.end()
    return conversation


# -- the demo page's sign-in, through its HTTP and socket flow ---------------------------------


@dataclass
class DemoUser:
    login: dict[str, Any]

    @property
    def lobby(self) -> int:
        lobby: int = self.login["lobby"]["conversationId"]
        return lobby


async def demo_sign_in(reader: Reader, name: str) -> DemoUser:
    async with aiohttp.ClientSession() as http, http.post(
        f"{reader.url}/dev/token", json={"name": name}
    ) as response:
        assert response.status == 200
        return DemoUser(await response.json())


async def demo_send(reader: Reader, user: DemoUser, text: str) -> None:
    """What the page does: join the Lobby over the socket, send into it."""
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(reader.url, auth={"token": user.login["token"]},
                      transports=["websocket"])
    try:
        joined = await sio.call("conversation:join", {"conversationId": user.lobby})
        assert joined["ok"] is True, joined
        sent = await sio.call("message:send", {
            "conversationId": user.lobby, "text": text, "messageId": f"demo-{time.time_ns()}"})
        assert sent["ok"] is True, sent
    finally:
        await sio.disconnect()


@asynccontextmanager
async def messenger(user: DemoUser, reader: Reader) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {user.login['token']}"}
    async with aiohttp.ClientSession(f"{reader.url}/api/messenger/", headers=headers) as http:
        yield http


async def demo_page_shows(reader: Reader, user: DemoUser) -> dict[str, list[str]]:
    """What the page lists after sign-in (REST): each conversation's title and texts."""
    shown: dict[str, list[str]] = {}
    async with messenger(user, reader) as http:
        async with http.get("conversations") as response:
            conversations = (await response.json())["conversations"]
        for conversation in conversations:
            async with http.get(f"conversations/{conversation['id']}/messages") as response:
                messages = (await response.json())["messages"]
            shown[conversation["title"]] = [message["text"] for message in messages]
    return shown


# -- both orders ------------------------------------------------------------------------------


async def test_the_tour_and_quick_start_first_then_the_demo(tmp_path: Path) -> None:
    with reader_with_server(tmp_path) as reader:
        team = await asyncio.to_thread(readme_tour, reader)
        quick_start = await quick_start_chat(reader)
        assert (team, quick_start) == (1, 2)  # a fresh database, as the docs say

        alice = await demo_sign_in(reader, "Alice")
        assert alice.login["lobby"]["title"] == "Lobby"
        assert alice.lobby not in (team, quick_start)
        await demo_send(reader, alice, "hi from the demo")
        # The Lobby holds the demo's message only: not the tour's "Hello 👋" from the
        # CLI's user 1, who is not the demo's Alice.
        assert alice.login["userId"] != 1
        assert await demo_page_shows(reader, alice) == {"Lobby": ["hi from the demo"]}


async def test_the_demo_first_then_the_tour_and_quick_start(tmp_path: Path) -> None:
    with reader_with_server(tmp_path) as reader:
        alice = await demo_sign_in(reader, "Alice")
        await demo_send(reader, alice, "hi from the demo")

        # The README's snippet reaches its own conversation: no FORBIDDEN.
        team = await asyncio.to_thread(readme_tour, reader)
        quick_start = await quick_start_chat(reader)
        assert len({alice.lobby, team, quick_start}) == 3

        bob = await demo_sign_in(reader, "Bob")  # the same Lobby, found again
        assert bob.lobby == alice.lobby
        assert await demo_page_shows(reader, bob) == {"Lobby": ["hi from the demo"]}


@pytest.mark.parametrize("document", ["README.md", "QUICK_START.md"])
def test_the_docs_use_no_conversation_id_they_did_not_print(document: str) -> None:
    """A reader's conversation may not be 1 (the demo's Lobby may be): every command
    that names a conversation takes the id the docs printed or saved."""
    for name, body in blocks(document).items():
        assert not re.search(r'"conversationId": \d|chat\.py "\$TOKEN" \d', body), name
