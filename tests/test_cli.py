"""The `ecigdis-ws` console script, run as a real subprocess in a scratch directory."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import jwt
import pytest
import socketio

from ecigdis_ws import __version__
from ecigdis_ws.storage.migrations import MIGRATIONS
from tests.deploy.support import wait_for_health
from tests.support import free_port, get_json

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = BIN / "ecigdis-ws"
SECRET = "cli-test-secret-that-is-long-enough-for-production"
COMMAND_TIMEOUT_S = 30
SERVER_UP_TIMEOUT_S = 10
SERVER_STOP_TIMEOUT_S = 10
CLIENT_TOLD_TIMEOUT_S = 3


def scratch_env(tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    """A minimal environment: nothing leaks in from the shell running pytest.

    An override of None removes that variable.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'chat.db'}",
        "JWT_SECRET": SECRET,
    }
    if "PYTHONPATH" in os.environ:  # PYTHONPATH=src: a clone's code, not the venv's install
        paths = os.environ["PYTHONPATH"].split(os.pathsep)
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(path) for path in paths)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def execute(
    command: Sequence[str], cwd: Path, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def run(tmp_path: Path, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    """`ecigdis-ws ARGS` in tmp_path with the scratch environment plus `env`."""
    return execute([str(SCRIPT), *args], tmp_path, scratch_env(tmp_path, **env))


def ok(tmp_path: Path, *args: str, **env: str | None) -> str:
    result = run(tmp_path, *args, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    ok(tmp_path, "migrate")
    return tmp_path


# -- migrate -------------------------------------------------------------------------


def test_migrate_applies_then_reports_up_to_date(tmp_path: Path) -> None:
    first = ok(tmp_path, "migrate")
    assert f"applied migrations {[m.version for m in MIGRATIONS]}" in first
    second = ok(tmp_path, "migrate")
    assert "up to date" in second
    assert (tmp_path / "chat.db").is_file()


def test_relative_sqlite_url_is_relative_to_the_working_directory(tmp_path: Path) -> None:
    ok(tmp_path, "migrate", DATABASE_URL="sqlite:///./data/relative.db")
    assert (tmp_path / "data" / "relative.db").is_file()


# -- conversations -------------------------------------------------------------------


def test_conversation_create_prints_the_new_id(migrated: Path) -> None:
    first = ok(migrated, "conversation", "create", "--title", "T", "--members", "1,2,3")
    second = ok(migrated, "conversation", "create", "--title", "U", "--members", "1")
    assert first.strip().isdigit()
    assert int(second.strip()) > int(first.strip())


def test_conversation_add_member_adds_once(migrated: Path) -> None:
    conversation = ok(migrated, "conversation", "create", "--title", "T", "--members", "1,2,3")
    conversation_id = conversation.strip()
    assert ok(migrated, "conversation", "add-member", conversation_id, "4").strip() == "added"
    again = ok(migrated, "conversation", "add-member", conversation_id, "4")
    assert again.strip() == "already a member"


def test_conversation_add_member_to_a_missing_conversation_exits_2(migrated: Path) -> None:
    result = run(migrated, "conversation", "add-member", "999", "4")
    assert result.returncode == 2
    assert "no conversation 999" in result.stderr


def test_bad_member_id_exits_2_naming_it_and_creates_nothing(migrated: Path) -> None:
    result = run(migrated, "conversation", "create", "--title", "T", "--members", "1,bob")
    assert result.returncode == 2
    assert "'bob' is not a valid user id" in result.stderr
    assert "USER_ID_TYPE=int" in result.stderr
    assert result.stdout == ""
    # Nothing was created: the next conversation is still the first.
    assert ok(migrated, "conversation", "create", "--title", "T", "--members", "1") == "1\n"



def test_conversations_past_max_conversation_members_exit_2_and_write_nothing(
    migrated: Path,
) -> None:
    cap = {"MAX_CONVERSATION_MEMBERS": "3"}
    too_many = run(migrated, "conversation", "create", "--title", "T",
                   "--members", "1,2,3,4", **cap)
    assert too_many.returncode == 2 and "at most 3" in too_many.stderr
    # Repeats count once: this is three members, and the first conversation.
    full = ok(migrated, "conversation", "create", "--title", "T", "--members", "1,2,3,2", **cap)
    assert full == "1\n"
    refused = run(migrated, "conversation", "add-member", "1", "4", **cap)
    assert refused.returncode == 2 and "MAX_CONVERSATION_MEMBERS" in refused.stderr
    # A member already in is no new member: the add answers as before.
    assert ok(migrated, "conversation", "add-member", "1", "3", **cap) == "already a member\n"
    assert ok(migrated, "conversation", "add-member", "1", "4").strip() == "added"


@pytest.mark.parametrize("command", [
    ("conversation", "create", "--title", "Team", "--members", "1,2"),
    ("conversation", "add-member", "1", "2"),
])
def test_conversation_commands_on_an_unmigrated_database_say_run_migrate(
    tmp_path: Path, db_env: dict[str, str], command: tuple[str, ...]
) -> None:
    result = run(tmp_path, *command, **db_env)
    assert result.returncode == 2, result.stderr
    assert "unapplied migrations" in result.stderr
    assert "run `ecigdis-ws migrate`" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    # Once migrated, the same command works on the same database.
    ok(tmp_path, "migrate", **db_env)
    if command[1] == "add-member":
        ok(tmp_path, "conversation", "create", "--title", "T", "--members", "1", **db_env)
    assert ok(tmp_path, *command, **db_env).strip() in {"1", "added"}

# -- tokens --------------------------------------------------------------------------


def test_token_is_a_jwt_for_that_user_signed_with_the_secret(tmp_path: Path) -> None:
    before = time.time()
    token = ok(tmp_path, "token", "--user", "42", "--name", "Alice", "--ttl", "1h").strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["userId"] == 42
    assert claims["sub"] == "42"
    assert claims["name"] == "Alice"
    assert before + 3600 - 2 <= claims["exp"] <= time.time() + 3600 + 2


def test_token_does_not_verify_with_another_secret(tmp_path: Path) -> None:
    token = ok(tmp_path, "token", "--user", "42", "--name", "Alice").strip()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "some-other-secret-of-a-sufficient-length", algorithms=["HS256"])


def test_token_with_a_bad_user_id_exits_2(tmp_path: Path) -> None:
    result = run(tmp_path, "token", "--user", "abc", "--name", "Alice")
    assert result.returncode == 2
    assert "'abc' is not a valid user id" in result.stderr
    assert result.stdout == ""


# -- configuration errors and version ------------------------------------------------


def test_invalid_setting_exits_2_naming_it(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate", WS_PORT="abc")
    assert result.returncode == 2
    assert "WS_PORT='abc'" in result.stderr
    assert "0 to 65535" in result.stderr
    assert not (tmp_path / "chat.db").exists()


def test_invalid_setting_in_dotenv_of_the_working_directory_exits_2(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LOG_LEVEL=chatty\n", encoding="utf-8")
    result = run(tmp_path, "migrate")
    assert result.returncode == 2
    assert "LOG_LEVEL='chatty'" in result.stderr


def test_python_dash_m_prints_the_version(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "ecigdis_ws", "--version"]
    result = execute(command, tmp_path, scratch_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ecigdis-ws {__version__}"


def test_production_without_jwt_secret_refuses_to_serve(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", "--port", str(free_port()), NODE_ENV="production",
                 JWT_SECRET=None)
    assert result.returncode != 0
    assert "JWT_SECRET" in result.stderr


def test_serve_on_an_unmigrated_database_exits_with_the_migrate_hint(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", "--port", str(free_port()), MIGRATE_ON_START="false")
    assert result.returncode != 0
    assert "ecigdis-ws migrate" in result.stderr


# -- errors that name the fix -----------------------------------------------------


def test_token_without_jwt_secret_warns_on_stderr_that_it_used_the_development_secret(
    tmp_path: Path,
) -> None:
    result = run(tmp_path, "token", "--user", "42", "--name", "Alice", JWT_SECRET=None)
    assert result.returncode == 0
    assert "JWT_SECRET is not set" in result.stderr
    assert "development secret" in result.stderr
    assert result.stdout.count(".") == 2  # stdout is the token alone, for $(...)
    with_secret = run(tmp_path, "token", "--user", "42", "--name", "Alice")
    assert with_secret.returncode == 0 and with_secret.stderr == ""


def test_serve_on_a_port_in_use_names_ws_port_and_the_port_option(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run(tmp_path, "serve", "--host", "127.0.0.1", "--port", str(port),
                     MIGRATE_ON_START="true")
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "address already in use" in result.stderr
    assert "WS_PORT or --port" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_wrong_database_password_says_where_to_look(
    tmp_path: Path, mariadb_url: str
) -> None:
    parts = urlsplit(mariadb_url)
    wrong = urlunsplit((parts.scheme, f"{parts.username or 'root'}:not-the-password@"
                        f"{parts.hostname}:{parts.port or 3306}", parts.path, "", ""))
    result = run(tmp_path, "migrate", DATABASE_URL=wrong)
    assert result.returncode == 1
    assert "(1045, " in result.stderr and "Access denied" in result.stderr
    assert "hint: wrong user or password: check both in DATABASE_URL" in result.stderr
    assert "not-the-password" not in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_token_signed_with_another_secret_is_logged_with_the_reason(
    tmp_path: Path,
) -> None:
    other = jwt.encode({"userId": 1, "name": "A", "exp": int(time.time()) + 600},
                       "another-secret-that-is-long-enough-for-production-use")
    with serving(tmp_path, LOG_LEVEL="info") as server:
        url = f"http://127.0.0.1:{server.port}"
        client = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(url, auth={"token": other}, transports=["websocket"],
                                 wait_timeout=5)
        async with aiohttp.ClientSession() as http, http.get(
            f"{url}/api/messenger/conversations", headers={"Authorization": f"Bearer {other}"}
        ) as response:
            assert response.status == 401
        server.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(server.process.wait, SERVER_STOP_TIMEOUT_S)
    log = server.stderr_path.read_text(encoding="utf-8")
    refused = [line for line in log.splitlines() if "token refused" in line]
    assert len(refused) == 2, log
    assert all("bad signature" in line and "info" in line for line in refused)
    assert any("via=socket" in line for line in refused)
    assert any("via=rest" in line for line in refused)
    assert other not in log and other.split(".")[2] not in log


# -- serve ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServeRun:
    """A `serve` process started, asked for /health once up, then sent SIGTERM."""

    health_status: int
    health: dict[str, Any]
    returncode: int
    stderr: str


@dataclasses.dataclass(frozen=True)
class Serving:
    """A `serve` process that has answered /health once."""

    process: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    health_status: int
    health: dict[str, Any]


@contextmanager
def serving(workdir: Path, **env: str | None) -> Iterator[Serving]:
    """Start `serve` on a free port, wait until /health answers; kill it if still running."""
    port = free_port()
    stderr_path = workdir / "serve.stderr"
    with stderr_path.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=scratch_env(workdir, MIGRATE_ON_START="true", **env),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + SERVER_UP_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    pytest.fail(f"serve exited {process.returncode}: {stderr_path.read_text()}")
                try:
                    status, body = get_json(f"http://127.0.0.1:{port}/health")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"serve did not answer in {SERVER_UP_TIMEOUT_S} s")
                    time.sleep(0.05)
            yield Serving(process, port, stderr_path, status, body)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def serve_once(
    workdir: Path, attack: Callable[[int], Awaitable[None]] | None = None, **env: str | None
) -> ServeRun:
    with serving(workdir, **env) as server:
        if attack is not None:
            asyncio.run(attack(server.port))
        server.process.send_signal(signal.SIGTERM)
        returncode = server.process.wait(timeout=SERVER_STOP_TIMEOUT_S)
    stderr = server.stderr_path.read_text(encoding="utf-8")
    return ServeRun(server.health_status, server.health, returncode, stderr)


@pytest.fixture(scope="module")
def development_run(tmp_path_factory: pytest.TempPathFactory) -> ServeRun:
    """`serve` in development without JWT_SECRET."""
    workdir = tmp_path_factory.mktemp("serve-development")
    return serve_once(workdir, NODE_ENV="development", JWT_SECRET=None)


# Client input that once made library code log plain-text tracebacks.
MALFORMED_FRAMES = ("9hello", "", "42" + "[" * 20_000 + "]" * 20_000)


async def send_malformed_packets(port: int) -> None:
    """Each frame on a websocket of its own; the server closes each connection."""
    async with aiohttp.ClientSession() as http:
        for frame in MALFORMED_FRAMES:
            url = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
            async with http.ws_connect(url) as ws:
                await ws.receive_str()
                await ws.send_str(frame)
                while not ws.closed:
                    await ws.receive()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await reader.read()  # (aiohttp answers 400 and closes)
        writer.close()


@pytest.fixture(scope="module")
def production_run(tmp_path_factory: pytest.TempPathFactory) -> ServeRun:
    """`serve` in production with a strong JWT_SECRET, sent malformed packets."""
    workdir = tmp_path_factory.mktemp("serve-production")
    return serve_once(workdir, send_malformed_packets, NODE_ENV="production")


def test_serve_answers_health_with_the_database_connected(development_run: ServeRun) -> None:
    assert development_run.health_status == 200
    assert development_run.health["status"] == "ok"
    assert development_run.health["database"] == "connected"
    assert development_run.health["redis"] == "disabled"


def test_serve_stops_with_exit_code_0_on_sigterm(
    development_run: ServeRun, production_run: ServeRun
) -> None:
    assert development_run.returncode == 0, development_run.stderr
    assert production_run.returncode == 0, production_run.stderr


def test_development_serve_warns_about_the_development_secret(development_run: ServeRun) -> None:
    assert "JWT_SECRET is not set" in development_run.stderr
    assert "development secret" in development_run.stderr


def test_production_serve_does_not_warn_about_the_development_secret(
    production_run: ServeRun,
) -> None:
    assert production_run.health_status == 200
    assert "JWT_SECRET is not set" not in production_run.stderr


def test_production_serve_logs_only_json_lines_to_stderr(production_run: ServeRun) -> None:
    lines = [line for line in production_run.stderr.splitlines() if line.strip()]
    records: list[dict[str, Any]] = [json.loads(line) for line in lines]
    assert records, production_run.stderr
    for record in records:
        assert {"level", "event", "timestamp"} <= record.keys()
    assert any(record["event"] == "migrations applied" for record in records)
    assert any(record["event"] == "listening" for record in records)
    refused = [r for r in records if r["event"] == "closing a connection that broke the protocol"]
    assert len(refused) == len(MALFORMED_FRAMES)
    assert all(r["level"] == "warning" and "exception" not in r for r in refused)
    assert not any("Traceback" in line for line in lines)


def test_development_serve_logs_are_not_json(development_run: ServeRun) -> None:
    lines = [line for line in development_run.stderr.splitlines() if line.strip()]
    assert lines
    assert not any(line.startswith("{") for line in lines)


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except ConnectionRefusedError:
        return False


@pytest.mark.parametrize(("env", "listens_on"), [
    ({"NODE_ENV": "development"}, "127.0.0.1"),
    ({"NODE_ENV": "development", "WS_HOST": "0.0.0.0"}, "0.0.0.0"),
    ({"NODE_ENV": "production"}, "0.0.0.0"),
])
def test_development_listens_on_loopback_only_unless_ws_host_says_otherwise(
    tmp_path: Path, env: dict[str, str], listens_on: str
) -> None:
    """In development POST /dev/token signs anyone in as anyone: by default only this
    machine reaches it. 127.0.0.2 is this machine too, but not the address bound."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(
            [str(SCRIPT), "serve"], cwd=tmp_path, stdout=output, stderr=output,
            env=scratch_env(tmp_path, WS_PORT=str(port), MIGRATE_ON_START="true", **env))
    try:
        wait_for_health(f"http://127.0.0.1:{port}", SERVER_UP_TIMEOUT_S,
                        alive=lambda: process.poll() is None, log=log)
        assert reachable("127.0.0.2", port) is (listens_on == "0.0.0.0")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=SERVER_STOP_TIMEOUT_S)
    assert f"http://{listens_on}:{port}" in log.read_text(encoding="utf-8")  # "listening"


async def test_sigterm_disconnects_connected_clients_at_once(tmp_path: Path) -> None:
    token = jwt.encode({"userId": 1, "name": "A", "exp": int(time.time()) + 600}, SECRET)
    with serving(tmp_path) as server:
        client = socketio.AsyncClient(reconnection=False)
        disconnected = asyncio.Event()
        client.on("disconnect", lambda *_: disconnected.set())
        await client.connect(
            f"http://127.0.0.1:{server.port}", auth={"token": token}, transports=["websocket"]
        )
        try:
            server.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(CLIENT_TOLD_TIMEOUT_S):
                await disconnected.wait()
            returncode = await asyncio.to_thread(server.process.wait, SERVER_STOP_TIMEOUT_S)
            assert returncode == 0
        finally:
            # Stop the server first: a client disconnecting from a dying server waits.
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait()
            if client.connected:
                await client.disconnect()


def test_a_library_traceback_is_one_json_line_in_production(tmp_path: Path) -> None:
    """Whatever a library logs (aiohttp's "Error handling request" with its traceback)
    keeps the JSON format, so a log shipper never sees a stray plain-text line."""
    code = (
        "import logging, pathlib\n"
        "from tests.support import test_settings\n"
        "from ecigdis_ws.observability.log_setup import configure_logging\n"
        f"configure_logging(test_settings(pathlib.Path({str(tmp_path)!r}), LOG_FORMAT='json'))\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError:\n"
        "    logging.getLogger('aiohttp.server').exception('Error handling request')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        check=True,
    )
    (line,) = result.stderr.splitlines()
    record = json.loads(line)
    assert record["event"] == "Error handling request"
    assert record["level"] == "error" and record["logger"] == "aiohttp.server"
    assert "ZeroDivisionError" in record["exception"]
