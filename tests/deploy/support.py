"""Shared by the deploy/ tests: tools installed on demand, real server nodes, free ports.

The tools each test drives (systemd-analyze, nginx, pm2, artillery) are installed by
the tests' session fixtures when missing: Debian packages with apt-get (as root), npm
packages into tests/deploy/.cache/<package>/node_modules (git-ignored as node_modules/,
reused by later sessions while the installed version is the pinned one). When a tool
cannot be had, a test skips with the reason, except under CI=true, where that fails.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import jwt
import pytest

from tests.needs import unavailable
from tests.support import free_port, get_json

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SCRIPT = Path(sys.executable).parent / "ecigdis-ws"
NPM_CACHE = Path(__file__).resolve().parent / ".cache"
SECRET = "deploy-test-secret-that-is-long-enough-for-production"

APT_UPDATE_TIMEOUT_S = 300
APT_INSTALL_TIMEOUT_S = 600
NPM_INSTALL_TIMEOUT_S = 300
COMMAND_TIMEOUT_S = 30
NODE_UP_TIMEOUT_S = 15
NODE_STOP_TIMEOUT_S = 15

Json = dict[str, Any]


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _which(binary: str) -> str | None:
    # nginx is in /usr/sbin, which is not on every user's PATH.
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return shutil.which(binary, path=path)


# -- Debian packages ---------------------------------------------------------------------------

_apt_updated = False


@contextmanager
def installing() -> Iterator[None]:
    """One install at a time across the test workers (pytest-xdist runs several
    processes): apt-get refuses to run beside another, and two npm installs into one
    prefix would each see the other's half-written tree. The lock file lives in the
    git-ignored cache, and the lock goes with the process."""
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    with (NPM_CACHE / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def apt_tool(package: str, binary: str) -> str:
    """The path of `binary`, installing Debian's `package` first when it is missing."""
    found = _which(binary)
    if found:
        return found
    with installing():
        return _apt_install(package, binary)


def _apt_install(package: str, binary: str) -> str:
    global _apt_updated
    found = _which(binary)  # (another worker may have installed it meanwhile)
    if found:
        return found
    what = f"{binary} is missing and `apt-get install {package}`"
    if shutil.which("apt-get") is None:
        unavailable(f"{binary} is missing and there is no apt-get to install {package}")
    if os.geteuid() != 0:
        unavailable(f"{what} needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        if not _apt_updated:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True,
                           text=True, timeout=APT_UPDATE_TIMEOUT_S, check=True)
            _apt_updated = True
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
            env=env, capture_output=True, text=True, timeout=APT_INSTALL_TIMEOUT_S, check=True,
        )
    except subprocess.CalledProcessError as exc:
        unavailable(f"{what} failed ({exc.returncode}):\n{_tail(exc.stdout + exc.stderr)}")
    except subprocess.TimeoutExpired as exc:
        unavailable(f"{what} did not finish in {exc.timeout} s")
    found = _which(binary)
    if found is None:
        unavailable(f"{package} was installed but {binary} is still missing")
    return found


# -- npm packages ------------------------------------------------------------------------------


def _npm_install(npm: str, prefix: Path, package: str, version: str) -> None:
    prefix.mkdir(parents=True, exist_ok=True)
    # --no-save and no package.json: npm writes nothing but node_modules/, which
    # .gitignore covers. --ignore-scripts: no install-time downloads (artillery's
    # Playwright browsers) and no native builds; neither tool needs them here.
    command = [npm, "install", "--prefix", str(prefix), "--no-save", "--no-package-lock",
               "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error",
               f"{package}@{version}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=NPM_INSTALL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        unavailable(f"npm install {package}@{version} took over {NPM_INSTALL_TIMEOUT_S} s")
    if done.returncode != 0:
        unavailable(f"npm install {package}@{version} failed ({done.returncode}):\n"
                    f"{_tail(done.stdout + done.stderr)}")


def npm_tool(package: str, version: str, binary: str) -> Path:
    """node_modules/.bin/`binary` of `package`@`version`, installed once into the cache."""
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        unavailable(f"{package} needs Node.js and npm on PATH")
    prefix = NPM_CACHE / package
    manifest = prefix / "node_modules" / package / "package.json"

    def installed() -> str | None:
        if not manifest.is_file():
            return None
        found: str = json.loads(manifest.read_text(encoding="utf-8"))["version"]
        return found

    if installed() != version:
        with installing():
            if installed() != version:  # (another worker may have installed it meanwhile)
                _npm_install(npm, prefix, package, version)
    assert installed() == version, f"{package} {installed()} is installed, not {version}"
    executable = prefix / "node_modules" / ".bin" / binary
    assert executable.is_file(), f"{executable} is missing after the install"
    return executable


# -- processes, ports, HTTP --------------------------------------------------------------------


def wait_for_health(
    url: str, timeout_s: float, alive: Callable[[], bool] | None = None, log: Path | None = None
) -> Json:
    """GET `url`/health until it answers 200. Fails after timeout_s, or at once when
    `alive()` says the server process died; the failure quotes the end of `log`."""
    deadline = time.monotonic() + timeout_s
    last: object = None

    def fail(why: str) -> NoReturn:
        output = _tail(log.read_text(encoding="utf-8", errors="replace")) if log else ""
        pytest.fail(f"{url}: {why}\n{output}")

    while True:
        if alive is not None and not alive():
            fail("the server exited before /health answered")
        try:
            status, body = get_json(f"{url}/health")
            if status == 200:
                return body
            last = (status, body)
        except (OSError, ValueError) as exc:
            last = exc
        if time.monotonic() > deadline:
            fail(f"/health did not answer 200 in {timeout_s} s; last: {last!r}")
        time.sleep(0.1)


def stop_process(process: subprocess.Popen[Any], timeout_s: float = NODE_STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL if it is still running after timeout_s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- the chat server ---------------------------------------------------------------------------


def server_env(workdir: Path, **overrides: str) -> dict[str, str]:
    """The server's settings for a test: nothing from the shell running pytest."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "NODE_ENV": "production",
        "DATABASE_URL": f"sqlite:///{workdir / 'chat.db'}",
        "JWT_SECRET": SECRET,
        "LOG_LEVEL": "warning",
    }
    env.update(overrides)
    return env


def cli(env: Mapping[str, str], *args: str) -> str:
    """`ecigdis-ws ARGS`; its standard output, failing the test when it fails."""
    done = subprocess.run([str(SCRIPT), *args], env=dict(env), cwd=env["HOME"],
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"ecigdis-ws {' '.join(args)}: {done.stderr}"
    return done.stdout


def token(user_id: int, name: str, ttl_s: int = 600) -> str:
    """A token as the portal mints one, signed with SECRET."""
    claims = {"userId": user_id, "name": name, "exp": int(time.time()) + ttl_s}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@dataclass(frozen=True)
class Node:
    """A running `ecigdis-ws serve` on a loopback port."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serving(env: Mapping[str, str], name: str = "node") -> Iterator[Node]:
    """`ecigdis-ws serve` on a free loopback port, up once /health answers; stopped after."""
    port = free_port()
    log = Path(env["HOME"]) / f"{name}-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=dict(env), cwd=env["HOME"], stdout=output, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_health(f"http://127.0.0.1:{port}", NODE_UP_TIMEOUT_S,
                        alive=lambda: process.poll() is None, log=log)
        yield Node(process, port, log)
    finally:
        stop_process(process)


def run_bounded(command: Sequence[str], timeout_s: float, **kwargs: Any) -> (
        subprocess.CompletedProcess[str]):
    """Run a command to completion within timeout_s, capturing its output as text."""
    return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout_s,
                          check=False, **kwargs)
