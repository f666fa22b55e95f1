"""The Node.js reference peer for the bench tests, and a server the bench can load.

The peer is ../shared/bench/node-reference/server.js, run in place: its one
dependency (socket.io, at the version its package.json pins) is installed once by
npm into tests/bench/.cache/node_modules (git-ignored as node_modules/) and found
through NODE_PATH. Without Node.js and npm the peer's tests skip, and under CI=true
they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.support import installing, run_bounded, stop_process, unavailable
from tests.support import RunningServer, free_port

REPO = Path(__file__).resolve().parents[2]
# ../shared beside the checkout, as on the workplace's machines and in CI; a clone
# made elsewhere (a scratch copy of main) finds the workplace's own copy.
PEER_DIR = next(
    (candidate for candidate in (
        REPO.parent / "shared" / "bench" / "node-reference",
        Path("/work/shared/bench/node-reference"),
    ) if candidate.is_dir()),
    REPO.parent / "shared" / "bench" / "node-reference",
)
CACHE = Path(__file__).resolve().parent / ".cache"
NPM_INSTALL_TIMEOUT_S = 300
PEER_UP_TIMEOUT_S = 15

# The bench sends far faster than a person: the server under test runs without the
# rate limits, as the bench says it must.
# The bench mints its tokens on the real clock, two years long so that they outlive
# RunningServer's ManualClock (2027): JWT_MAX_TTL_S would refuse them as too long.
REAL_CLOCK_TOKENS = {"JWT_MAX_TTL_S": "0"}
UNLIMITED = {"RATE_LIMIT_MESSAGES": "0", "RATE_LIMIT_EVENTS": "0", **REAL_CLOCK_TOKENS}


@dataclass(frozen=True)
class NodePeer:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid


def _pinned_socket_io() -> str:
    manifest = json.loads((PEER_DIR / "package.json").read_text(encoding="utf-8"))
    version: str = manifest["dependencies"]["socket.io"]
    return version


def _installed_socket_io() -> str | None:
    manifest = CACHE / "node_modules" / "socket.io" / "package.json"
    if not manifest.is_file():
        return None
    version: str = json.loads(manifest.read_text(encoding="utf-8"))["version"]
    return version


def _install_socket_io() -> None:
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        unavailable("the Node.js peer needs node and npm on PATH")
    if not (PEER_DIR / "server.js").is_file():
        unavailable(f"the Node.js peer is not at {PEER_DIR}")
    version = _pinned_socket_io()
    if _installed_socket_io() == version:
        return
    with installing():  # (one npm install at a time across the test workers)
        if _installed_socket_io() != version:
            _npm_install_socket_io(npm, version)
    assert _installed_socket_io() == version


def _npm_install_socket_io(npm: str, version: str) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    done = run_bounded(
        [npm, "install", "--prefix", str(CACHE), "--no-save", "--no-package-lock", "--no-audit",
         "--no-fund", "--loglevel=error", f"socket.io@{version}"],
        NPM_INSTALL_TIMEOUT_S,
    )
    if done.returncode != 0:
        unavailable(f"npm install socket.io@{version} failed:\n{done.stderr[-2000:]}")


def _wait_until_listening(peer: NodePeer, log: Path) -> None:
    deadline = time.monotonic() + PEER_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        if peer.process.poll() is not None:
            pytest.fail(f"the Node peer exited: {log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{peer.url}/status", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the Node peer did not answer in {PEER_UP_TIMEOUT_S} s")


@pytest.fixture(scope="session")
def node_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodePeer]:
    """PORT=<free> node server.js, for the whole session (tests use their own user ids)."""
    _install_socket_io()
    log = tmp_path_factory.mktemp("node-peer") / "peer.log"
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "PORT": str(port), "HOST": "127.0.0.1", "NODE_PATH": str(CACHE / "node_modules")}
    with log.open("wb") as output:
        process = subprocess.Popen(["node", str(PEER_DIR / "server.js")], env=env,
                                   stdout=output, stderr=subprocess.STDOUT)
    peer = NodePeer(process, port)
    try:
        _wait_until_listening(peer, log)
        yield peer
    finally:
        stop_process(process)


@pytest.fixture
async def bench_server(
    make_server: Callable[..., AbstractAsyncContextManager[RunningServer]],
) -> AsyncIterator[RunningServer]:
    """The real server, in this process, on each backend, with the rate limits off."""
    async with make_server(**UNLIMITED) as server:
        yield server
