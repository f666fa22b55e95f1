"""systemd readiness: a real `ecigdis-ws serve` reports READY=1 over $NOTIFY_SOCKET only
once it accepts connections and its database answered, and STOPPING=1 on SIGTERM.

The test plays systemd's part: it binds the unix datagram socket and hands its
address to the server in NOTIFY_SOCKET, as systemd does for a Type=notify unit.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ecigdis_ws.ops.sd_notify import notify
from ecigdis_ws.settings import notify_socket as notify_socket_of
from ecigdis_ws.settings import render_env_example
from tests.deploy.support import SCRIPT, get_json, server_env, stop_process
from tests.support import free_port

READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0


@dataclass
class NotifySocket:
    """The service manager's end: a bound datagram socket and the address to give out."""

    sock: socket.socket
    address: str

    def receive(self, timeout_s: float) -> list[str]:
        """The next datagram's lines; fails when none comes in time."""
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recv(4096).decode().splitlines()
        except TimeoutError:
            pytest.fail(f"no notification within {timeout_s} s")

    def pending(self) -> list[bytes]:
        """Every datagram already received, without waiting."""
        self.sock.setblocking(False)
        found = []
        with contextlib.suppress(BlockingIOError):
            while True:
                found.append(self.sock.recv(4096))
        return found


@contextlib.contextmanager
def notify_socket(kind: str) -> Iterator[NotifySocket]:
    """A path in a short temporary directory (sun_path holds 107 bytes, pytest's
    tmp_path can be longer), or a name in the abstract namespace ('@name')."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    directory = None
    try:
        if kind == "path":
            directory = tempfile.mkdtemp(prefix="sdn-")
            address = f"{directory}/notify"
            sock.bind(address)
        else:
            name = f"ecigdis-ws-test-{secrets.token_hex(6)}"
            sock.bind("\0" + name)
            address = "@" + name
        yield NotifySocket(sock, address)
    finally:
        sock.close()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


def start_serve(workdir: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    log = (workdir / "serve.log").open("wb")
    try:
        return subprocess.Popen(
            [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env(workdir, **env), cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_ready_arrives_when_health_already_answers_and_stopping_on_sigterm(
    tmp_path: Path, kind: str
) -> None:
    port = free_port()
    with notify_socket(kind) as manager:
        process = start_serve(tmp_path, port, MIGRATE_ON_START="true",
                              NOTIFY_SOCKET=manager.address)
        try:
            ready = manager.receive(READY_TIMEOUT_S)
            # At the moment READY=1 arrives the server must already answer.
            status, body = get_json(f"http://127.0.0.1:{port}/health")
            assert "READY=1" in ready
            assert f"STATUS=accepting connections on http://127.0.0.1:{port}" in ready
            assert (status, body["database"]) == (200, "connected")
            assert process.poll() is None

            process.send_signal(signal.SIGTERM)
            stopping = manager.receive(STOP_TIMEOUT_S)
            assert "STOPPING=1" in stopping
            assert process.wait(timeout=STOP_TIMEOUT_S) == 0
            assert manager.pending() == []  # READY=1 once, STOPPING=1 once, nothing else
        finally:
            stop_process(process)


def test_unmigrated_database_exits_without_reporting_ready(tmp_path: Path) -> None:
    with notify_socket("abstract") as manager:
        process = start_serve(tmp_path, free_port(), MIGRATE_ON_START="false",
                              NOTIFY_SOCKET=manager.address)
        try:
            assert process.wait(timeout=READY_TIMEOUT_S) == 1
        finally:
            stop_process(process)
        assert not any(b"READY=1" in datagram for datagram in manager.pending())
    assert "ecigdis-ws migrate" in (tmp_path / "serve.log").read_text()


def test_unreachable_database_exits_with_one_line_and_without_ready(tmp_path: Path) -> None:
    nothing_there = free_port()
    with notify_socket("abstract") as manager:
        process = start_serve(
            tmp_path, free_port(), DATABASE_URL=f"mysql://chat:pw@127.0.0.1:{nothing_there}/chat",
            DB_CONNECT_TIMEOUT_MS="1000", NOTIFY_SOCKET=manager.address,
        )
        try:
            assert process.wait(timeout=READY_TIMEOUT_S) == 1
        finally:
            stop_process(process)
        assert not any(b"READY=1" in datagram for datagram in manager.pending())
    output = (tmp_path / "serve.log").read_text()
    assert output.startswith("ecigdis-ws: cannot open the database: mariadb: cannot connect to "
                             f"127.0.0.1:{nothing_there}/chat"), output
    assert "Traceback" not in output


def test_port_in_use_exits_without_reporting_ready(tmp_path: Path) -> None:
    with socket.socket() as taken, notify_socket("abstract") as manager:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_serve(tmp_path, port, MIGRATE_ON_START="true",
                              NOTIFY_SOCKET=manager.address)
        try:
            assert process.wait(timeout=READY_TIMEOUT_S) == 1
        finally:
            stop_process(process)
        assert not any(b"READY=1" in datagram for datagram in manager.pending())
    assert f"cannot listen on 127.0.0.1:{port}" in (tmp_path / "serve.log").read_text()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    assert notify(None, "READY=1") is False
    assert notify("", "READY=1") is False


def test_a_vanished_service_manager_does_not_raise() -> None:
    started = time.monotonic()
    assert notify(f"@ecigdis-ws-nobody-{secrets.token_hex(6)}", "READY=1") is False
    assert notify("/nonexistent-dir/notify", "READY=1") is False
    assert time.monotonic() - started < 1


def test_notify_socket_comes_from_the_process_environment_only() -> None:
    """Not a setting: an EnvironmentFile beats systemd's own variables, so a
    `NOTIFY_SOCKET=` line copied from .env.example would blank systemd's socket."""
    assert "NOTIFY_SOCKET" not in render_env_example()
    assert notify_socket_of({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert notify_socket_of({"NOTIFY_SOCKET": ""}) is None
    assert notify_socket_of({}) is None
