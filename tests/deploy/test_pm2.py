"""deploy/pm2/ecosystem.config.js, run by a real PM2 (npm's pm2, pinned below).

PM2 starts the server from the shipped file with the settings in its environment
(a scratch SQLite database, a free loopback port), under a scratch PM2_HOME so the
test neither sees nor touches another PM2 on the machine. The tests, in file order
on one running app: it is online and healthy; after a SIGKILL PM2 starts it again
(a new pid, /health back); `pm2 stop` ends it gracefully, with exit code 0. The
module's teardown always runs `pm2 delete all` and `pm2 kill`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import (
    DEPLOY,
    REPO,
    SCRIPT,
    Json,
    free_port,
    get_json,
    npm_tool,
    run_bounded,
    server_env,
    unavailable,
    wait_for_health,
)

PM2_VERSION = "7.0.4"
ECOSYSTEM = DEPLOY / "pm2" / "ecosystem.config.js"
APP = "ecigdis-ws"
PM2_TIMEOUT_S = 30
UP_TIMEOUT_S = 15
# restart_delay (2 s) plus the server's start-up.
RESTART_TIMEOUT_S = 15
DEFAULT_SHUTDOWN_TIMEOUT_MS = 10000


@pytest.fixture(scope="session")
def pm2() -> Path:
    return npm_tool("pm2", PM2_VERSION, "pm2")


@dataclass(frozen=True)
class Pm2:
    """A scratch PM2 daemon and the environment its commands run in."""

    executable: Path
    env: dict[str, str]
    home: Path
    logs: Path
    port: int

    def run(self, *args: str) -> str:
        done = run_bounded([str(self.executable), *args], PM2_TIMEOUT_S, env=self.env,
                           cwd=self.env["HOME"])
        assert done.returncode == 0, f"pm2 {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def app(self) -> Json:
        """The app's entry in `pm2 jlist`."""
        listing = self.run("jlist")
        apps: list[Json] = json.loads(listing[listing.index("["):])
        matching = [app for app in apps if app["name"] == APP]
        assert len(matching) == 1, apps
        return matching[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _daemon_pid(home: Path) -> int | None:
    try:
        return int((home / "pm2.pid").read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _kill_if_ours(pid: int | None, home: Path) -> None:
    """SIGKILL `pid` if it is still a process of this test's PM2 (its PM2_HOME is in the
    process's environment), never a process that reused the number."""
    if not pid:
        return
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return
    if f"PM2_HOME={home}".encode() in environ:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def started(pm2: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pm2]:
    workdir = tmp_path_factory.mktemp("pm2")
    port = free_port()
    env = server_env(
        workdir,
        PM2_HOME=str(workdir / "pm2-home"),
        MIGRATE_ON_START="true",
        LOG_LEVEL="info",  # for the "listening" line in the error log
        WS_HOST="127.0.0.1",
        WS_PORT=str(port),
        # The file's defaults are the repository's .venv, root and logs/; here the
        # console script running these tests, the scratch directory (no .env from a
        # developer's checkout) and scratch logs.
        ECIGDIS_WS_BIN=str(SCRIPT),
        ECIGDIS_WS_CWD=str(workdir),
        ECIGDIS_WS_LOG_DIR=str(workdir / "logs"),
    )
    manager = Pm2(pm2, env, workdir / "pm2-home", workdir / "logs", port)
    try:
        manager.run("start", str(ECOSYSTEM))
        yield manager
    finally:
        app_pid: int | None = None
        for command in (["jlist"], ["delete", "all"], ["kill"]):
            done = run_bounded([str(pm2), *command], PM2_TIMEOUT_S, env=env, cwd=workdir)
            if command == ["jlist"] and done.returncode == 0 and "[" in done.stdout:
                apps = json.loads(done.stdout[done.stdout.index("["):])
                app_pid = next((a.get("pid") for a in apps if a["name"] == APP), None)
        # Whatever `pm2 kill` left behind: the daemon and the app, by their own pids.
        for pid in (_daemon_pid(manager.home), app_pid):
            _kill_if_ours(pid, manager.home)


def test_the_app_is_online_and_answers_health(started: Pm2) -> None:
    wait_for_health(started.url, UP_TIMEOUT_S)
    app = started.app()
    assert app["pm2_env"]["status"] == "online"
    assert app["pid"] > 0
    status, health = get_json(f"{started.url}/health")
    assert (status, health["database"]) == (200, "connected")


def test_the_app_runs_the_console_script_with_serve(started: Pm2) -> None:
    pm2_env = started.app()["pm2_env"]
    assert pm2_env["pm_exec_path"] == str(SCRIPT)
    assert pm2_env["args"] == ["serve"]
    assert pm2_env["exec_interpreter"] == "none"
    assert pm2_env["autorestart"] is True
    assert pm2_env["kill_timeout"] > DEFAULT_SHUTDOWN_TIMEOUT_MS
    # Logs go where ECIGDIS_WS_LOG_DIR says, under the file's names.
    assert pm2_env["pm_err_log_path"] == str(started.logs / "ecigdis-ws.error.log")
    assert pm2_env["pm_out_log_path"] == str(started.logs / "ecigdis-ws.out.log")
    # Production logs JSON lines on stderr. The line is written once the server
    # listens, and PM2 copies the pipe to the file on its own time: waited for,
    # as worksteal may run this test before the health test, or on another worker.
    wait_for_health(started.url, UP_TIMEOUT_S)
    error_log = started.logs / "ecigdis-ws.error.log"
    deadline = time.monotonic() + UP_TIMEOUT_S
    def written() -> str:
        return error_log.read_text(encoding="utf-8") if error_log.exists() else ""

    while '"event": "listening"' not in written():
        assert time.monotonic() < deadline, f"no listening line in {written()!r}"
        time.sleep(0.1)


def test_pm2_restarts_the_server_after_sigkill(started: Pm2) -> None:
    wait_for_health(started.url, UP_TIMEOUT_S)
    before = started.app()
    os.kill(before["pid"], signal.SIGKILL)
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while True:
        app = started.app()
        if app["pid"] not in (0, before["pid"]) and app["pm2_env"]["status"] == "online":
            break
        assert time.monotonic() < deadline, f"not restarted in {RESTART_TIMEOUT_S} s: {app}"
        time.sleep(0.2)
    assert app["pm2_env"]["restart_time"] == before["pm2_env"]["restart_time"] + 1
    health = wait_for_health(started.url, UP_TIMEOUT_S)
    assert health["status"] == "ok"


def test_pm2_stop_ends_the_server_gracefully_with_exit_code_0(started: Pm2) -> None:
    """PM2 sends SIGINT, which the server handles as SIGTERM. Runs last: it leaves the
    app stopped."""
    wait_for_health(started.url, UP_TIMEOUT_S)
    began = time.monotonic()
    started.run("stop", APP)
    took = time.monotonic() - began
    assert started.app()["pm2_env"]["status"] == "stopped"
    # Well within kill_timeout: the server drained and exited, PM2 did not SIGKILL it.
    assert took < DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000
    daemon_log = (started.home / "pm2.log").read_text(encoding="utf-8")
    # A SIGKILL would read "exited with code [null] via signal [SIGKILL]".
    assert f"App [{APP}:0] exited with code [0]" in daemon_log


# -- the file's defaults -----------------------------------------------------------------------


def load_ecosystem(**env: str) -> Json:
    """The exported configuration, as node evaluates it with exactly `env`."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not on PATH")  # (a failure under CI=true)
    script = f"process.stdout.write(JSON.stringify(require({json.dumps(str(ECOSYSTEM))})))"
    done = run_bounded([node, "-e", script], PM2_TIMEOUT_S, env={"PATH": "/usr/bin:/bin", **env})
    assert done.returncode == 0, done.stderr
    loaded: Json = json.loads(done.stdout)
    return loaded


def test_defaults_are_relative_to_the_repository() -> None:
    (app,) = load_ecosystem()["apps"]
    assert app["name"] == APP
    assert app["script"] == str(REPO / ".venv" / "bin" / "ecigdis-ws")
    assert app["cwd"] == str(REPO)
    assert app["out_file"] == str(REPO / "logs" / "ecigdis-ws.out.log")
    assert app["error_file"] == str(REPO / "logs" / "ecigdis-ws.error.log")
    assert (app["args"], app["interpreter"]) == ("serve", "none")
    assert app["max_restarts"] > 0 and app["restart_delay"] > 0
    assert app["kill_timeout"] > DEFAULT_SHUTDOWN_TIMEOUT_MS


def test_kill_timeout_follows_shutdown_timeout_ms() -> None:
    app: dict[str, Any] = load_ecosystem(SHUTDOWN_TIMEOUT_MS="30000")["apps"][0]
    assert app["kill_timeout"] > 30000
