"""Real-browser tests: Debian's Chromium driven by playwright-core, the server as a process.

What the tests need is installed by session fixtures (conftest.py), never downloaded
by Playwright: Chromium with `apt-get install chromium` (as root, when missing),
playwright-core from npm into tests/browser/.cache/ (git-ignored), and the
ChatManager bundle with `make client`. When one of them cannot be had the tests
skip with the reason, except under CI=true, where that is a failure.

The browser runs in tests/browser/runner.mjs, which takes one JSON request a line
and answers each; `Browser` here is the test's end of that pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import npm_tool, unavailable
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RUNNER = HERE / "runner.mjs"
ARTIFACTS = REPO / "artifacts" / "browser"
BUNDLE = REPO / "src" / "ecigdis_ws" / "static" / "build" / "chat-manager.js"
# `python -m ecigdis_ws`, the same CLI as the ecigdis-ws script.
SERVER_COMMAND = [sys.executable, "-m", "ecigdis_ws"]

CHROMIUM = "/usr/bin/chromium"
# The flags the issue asks for: no sandbox (root in a container), no GPU, and no
# background traffic to anywhere but the server under test.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PLAYWRIGHT_CORE = "playwright-core"
PLAYWRIGHT_VERSION = "1.65.1"

APT_UPDATE_TIMEOUT_S = 300
APT_INSTALL_TIMEOUT_S = 900
MAKE_CLIENT_TIMEOUT_S = 300
BROWSER_START_TIMEOUT_S = 30
COMMAND_TIMEOUT_S = 30  # one runner command; every wait inside one is shorter
SERVER_UP_TIMEOUT_S = 15
SERVER_STOP_TIMEOUT_S = 15
WAIT_MS = 8000  # a page waiting for something another page or the server does

Json = dict[str, Any]


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(command: list[str], timeout_s: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                          check=False, **kwargs)


# -- the tools ---------------------------------------------------------------------------------


def chromium() -> str:
    """/usr/bin/chromium, from `apt-get install chromium` when it is missing."""
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        unavailable(f"{CHROMIUM} is missing; install it with `apt-get install chromium` (as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command, timeout_s in (
        (["apt-get", "update", "-qq"], APT_UPDATE_TIMEOUT_S),
        (["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
         APT_INSTALL_TIMEOUT_S),
    ):
        try:
            done = _run(command, timeout_s, env=env)
        except subprocess.TimeoutExpired:
            unavailable(f"`{' '.join(command)}` took over {timeout_s} s")
        if done.returncode != 0:
            unavailable(f"`{' '.join(command)}` failed ({done.returncode}):\n"
                        f"{_tail(done.stdout + done.stderr)}")
    if not Path(CHROMIUM).is_file():
        unavailable(f"chromium was installed but {CHROMIUM} is missing")
    return CHROMIUM


def node() -> str:
    path = shutil.which("node")
    if path is None or shutil.which("npm") is None:
        unavailable("the browser tests need Node.js and npm on PATH")
    assert path is not None
    return path


def playwright_core() -> Path:
    """The folder whose node_modules holds playwright-core (pinned), installed once by
    the deploy tests' npm helper: --ignore-scripts, and playwright-core itself, so
    nothing downloads a browser."""
    # npm_tool answers prefix/node_modules/.bin/playwright-core.
    return npm_tool(PLAYWRIGHT_CORE, PLAYWRIGHT_VERSION, PLAYWRIGHT_CORE).parents[2]


def build_client() -> Path:
    """`make client`: the ChatManager bundle the server serves (rebuilt only on change)."""
    if shutil.which("make") is None:
        unavailable("the browser tests build the client with `make client`: make is missing")
    try:
        done = _run(["make", "--no-print-directory", "client"], MAKE_CLIENT_TIMEOUT_S, cwd=REPO)
    except subprocess.TimeoutExpired:
        unavailable(f"`make client` took over {MAKE_CLIENT_TIMEOUT_S} s")
    if done.returncode != 0:
        output = _tail(done.stdout + done.stderr)
        unavailable(f"`make client` failed ({done.returncode}):\n{output}")
    assert BUNDLE.is_file(), f"`make client` succeeded but {BUNDLE} is missing"
    return BUNDLE


# -- the server as a process ---------------------------------------------------------------------


@dataclass
class ChatServer:
    """`ecigdis-ws serve` on one loopback port and one SQLite file, restartable."""

    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "server.log"

    def start(self) -> None:
        assert self.process is None, "already running"
        self.starts += 1
        with self.log.open("ab") as output:
            output.write(f"--- start {self.starts} ---\n".encode())
            output.flush()
            self.process = subprocess.Popen(
                [*SERVER_COMMAND, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env, cwd=self.workdir, stdout=output, stderr=subprocess.STDOUT,
            )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + SERVER_UP_TIMEOUT_S
        last: object = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"the server exited ({self.process.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError) as exc:
                last = exc
            time.sleep(0.1)
        pytest.fail(f"/health did not answer in {SERVER_UP_TIMEOUT_S} s ({last!r}):\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM, as systemd or PM2 stop it: the server closes its sockets and exits."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"the server did not stop in {SERVER_STOP_TIMEOUT_S} s:\n{self.tail()}")

    def tail(self) -> str:
        if not self.log.is_file():
            return ""
        return _tail(self.log.read_text(encoding="utf-8", errors="replace"))


def server_env(workdir: Path, **overrides: str) -> dict[str, str]:
    """A development server on its own SQLite file; nothing from the shell running pytest."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "NODE_ENV": "development",
        "DATABASE_URL": f"sqlite:///{workdir / 'chat.db'}",
        "MIGRATE_ON_START": "true",
        "JWT_SECRET": "browser-test-secret-that-is-long-enough-for-production",
        "LOG_LEVEL": "warning",
        # Two pages of one test may send in quick bursts; the limits have tests of their own.
        "RATE_LIMIT_EVENTS": "0",
        "RATE_LIMIT_MESSAGES": "0",
        # A restart should not wait for in-flight work longer than a test can.
        "SHUTDOWN_TIMEOUT_MS": "2000",
    }
    if "PYTHONPATH" in os.environ:  # PYTHONPATH=src: a clone's code, not the venv's install
        # (and its demo page and client bundle, which the server serves from its package)
        paths = os.environ["PYTHONPATH"].split(os.pathsep)
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(path) for path in paths)
    env.update(overrides)
    return env


# -- the browser ---------------------------------------------------------------------------------


class BrowserError(AssertionError):
    """A runner command failed; the message carries the page's console."""


@dataclass
class Browser:
    process: asyncio.subprocess.Process
    version: str
    _next_id: int = 0
    _waiting: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None
    _stderr_reader: asyncio.Task[None] | None = None
    stderr: list[str] = field(default_factory=list)

    def _start_reading(self) -> None:
        self._reader = asyncio.ensure_future(self._read())
        self._stderr_reader = asyncio.ensure_future(self._read_stderr())

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.stderr.append(line.decode(errors="replace").rstrip())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            future = self._waiting.pop(message.get("id"), None)
            if future is None or future.done():
                continue
            if message["ok"]:
                future.set_result(message["value"])
            else:
                future.set_exception(BrowserError(message["error"]))
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(BrowserError("the runner exited"))

    async def call(self, cmd: str, timeout_s: float = COMMAND_TIMEOUT_S, **arguments: Any) -> Any:
        assert self.process.stdin is not None
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = future
        request = {"id": self._next_id, "cmd": cmd, **arguments}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        await self.process.stdin.drain()
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            raise BrowserError(f"{cmd} {arguments!r}: no answer in {timeout_s} s") from None

    async def page(
        self, name: str, blockable: bool = False, viewport: tuple[int, int] = (1100, 720),
        touch: bool = False,
    ) -> Page:
        """A page in a browser context of its own, `viewport` (width, height) CSS px;
        `touch`: a phone's (a touch screen, no hovering pointer)."""
        width, height = viewport
        await self.call("newPage", page=name, blockable=blockable, width=width, height=height,
                        touch=touch)
        return Page(self, name)

    async def close(self) -> None:
        with contextlib.suppress(BrowserError, ConnectionError, TimeoutError):
            await self.call("close", timeout_s=10)
        if self.process.returncode is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        for reader in (self._reader, self._stderr_reader):
            if reader is not None:
                reader.cancel()


@dataclass
class Page:
    browser: Browser
    name: str

    async def _call(self, cmd: str, **arguments: Any) -> Any:
        try:
            return await self.browser.call(cmd, page=self.name, **arguments)
        except BrowserError as exc:
            logs = await self.logs()
            raise BrowserError(f"[{self.name}] {exc}\n--- console of {self.name}:\n"
                               + "\n".join(logs[-40:])) from None

    async def logs(self) -> list[str]:
        try:
            logs: list[str] = await self.browser.call("logs", page=self.name, timeout_s=5)
        except BrowserError:
            return []
        return logs

    async def requests(self) -> list[str]:
        urls: list[str] = await self._call("requests")
        return urls

    async def frames_sent(self) -> list[str]:
        frames: list[str] = await self._call("framesSent")
        return frames

    async def goto(self, url: str) -> None:
        await self._call("goto", url=url)

    async def fill(self, selector: str, value: str) -> None:
        await self._call("fill", selector=selector, value=value)

    async def press(self, selector: str, key: str) -> None:
        await self._call("press", selector=selector, key=key)

    async def type(self, selector: str, text: str, delay_ms: int = 20) -> None:
        await self._call("type", selector=selector, text=text, delayMs=delay_ms)

    async def click(self, selector: str) -> None:
        await self._call("click", selector=selector)

    async def hover(self, selector: str) -> None:
        await self._call("hover", selector=selector)

    async def tap(self, selector: str) -> None:
        """A tap on a touch page (`Browser.page(touch=True)`)."""
        await self._call("tap", selector=selector)

    async def eval(self, fn: str, arg: Any = None) -> Any:
        return await self._call("eval", fn=fn, arg=arg)

    async def wait_for(self, fn: str, arg: Any = None, timeout_ms: int = WAIT_MS) -> Any:
        return await self._call("waitFor", fn=fn, arg=arg, timeoutMs=timeout_ms)

    async def block(self, websocket: bool = False, polling: bool = False) -> None:
        await self._call("block", websocket=websocket, polling=polling)

    async def stall_polls(self, stall: bool) -> int:
        """Hold (or send on) the page's REST long-polls in the proxy; how many are held."""
        held: int = await self._call("stallPolls", stall=stall)
        return held

    async def drop_acks(self, count: int) -> None:
        await self._call("dropAcks", count=count)

    async def strip_members(self, strip: bool) -> None:
        """On a blockable page: the socket's acks and the REST history pages come without
        `members`, as from a server that does not list them."""
        await self._call("stripMembers", strip=strip)

    async def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        await self._call("screenshot", path=str(path))
        return path


@asynccontextmanager
async def launch(
    node_path: str, chromium_path: str, playwright_dir: Path
) -> AsyncIterator[Browser]:
    config = {"playwrightDir": str(playwright_dir),
              "executablePath": chromium_path, "args": CHROMIUM_ARGS}
    process = await asyncio.create_subprocess_exec(
        node_path, str(RUNNER), json.dumps(config), cwd=HERE,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        async with asyncio.timeout(BROWSER_START_TIMEOUT_S):
            first = await process.stdout.readline()
    except TimeoutError:
        first = b""
    if not first:
        process.kill()
        errors = (await process.stderr.read()).decode(errors="replace")
        pytest.fail(f"Chromium did not start under playwright-core:\n{_tail(errors)}")
    ready: Json = json.loads(first)
    browser = Browser(process, ready["version"])
    browser._start_reading()
    try:
        yield browser
    finally:
        await browser.close()

