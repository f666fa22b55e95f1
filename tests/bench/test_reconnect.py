"""`ecigdis-ws bench --scenario reconnect`: the server killed and restarted under its clients.

The server is a real process (`ecigdis-ws serve`, SQLite in the test's folder), and
the bench's --restart-cmd is benchmarks/restart_server.py, which SIGKILLs it and
starts it again on the same port and database, as compare.sh does. The figures are
checked against the database the server wrote: every message the bench counts as
acknowledged is stored there.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.bench.conftest import (
    CACHE,
    PEER_DIR,
    NodePeer,
    _install_socket_io,
    _wait_until_listening,
)
from tests.deploy.support import SCRIPT, server_env, serving, stop_process
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
RESTART = REPO / "benchmarks" / "restart_server.py"
RUN_TIMEOUT_S = 180
STOP_TIMEOUT_S = 15
CLIENTS, GROUP = 50, 5
CONVERSATIONS = CLIENTS // GROUP
# What the bench needs of the server under test (benchmarks/README.md).
BENCH_SETTINGS = {"RATE_LIMIT_MESSAGES": "0", "RATE_LIMIT_EVENTS": "0",
                  "MAX_CONNECTIONS_PER_USER": "0", "MAX_UNAUTHENTICATED_PER_IP": "0",
                  "MIGRATE_ON_START": "true"}
# Short back-off, so that the test is quick; it still spreads the clients out.
QUICK = ("--clients", str(CLIENTS), "--group", str(GROUP), "--processes", "2", "--rate", "100",
         "--warmup", "1", "--settle", "0.2", "--drain", "3", "--reconnect-delay", "0.2",
         "--reconnect-delay-max", "1", "--reconnect-timeout", "60", "--no-progress")


@dataclass(frozen=True)
class Restartable:
    url: str
    env: dict[str, str]
    pidfile: Path
    first_pid: int
    restart_cmd: str

    def pid(self) -> int:
        return int(self.pidfile.read_text().strip())


def _stop(pid: int) -> None:
    """SIGTERM the restarted server (not our child: it runs in a session of its own)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Restartable]:
    env = server_env(tmp_path, **BENCH_SETTINGS)
    with serving(env) as node:
        pidfile = tmp_path / "server.pid"
        pidfile.write_text(f"{node.process.pid}\n")
        argv = [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(node.port)]
        restart = shlex.join([
            sys.executable, str(RESTART), str(pidfile), "--log", str(node.log), "--cwd",
            str(tmp_path), "--wait-url", f"{node.url}/health", "--", *argv])
        server = Restartable(node.url, env, pidfile, node.process.pid, restart)
        try:
            yield server
        finally:
            if server.pid() != node.process.pid:
                _stop(server.pid())


@pytest.fixture
def restartable_peer(tmp_path: Path) -> Iterator[Restartable]:
    """The Node.js peer (in memory, no `since`), restartable the same way."""
    _install_socket_io()
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "LANG": "C.UTF-8", "PORT": str(port), "HOST": "127.0.0.1",
           "NODE_PATH": str(CACHE / "node_modules")}
    argv = ["node", str(PEER_DIR / "server.js")]
    log = tmp_path / "peer.log"
    with log.open("wb") as output:
        process = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=output,
                                   stderr=subprocess.STDOUT)
    peer = NodePeer(process, port)
    pidfile = tmp_path / "server.pid"
    pidfile.write_text(f"{process.pid}\n")
    restart = shlex.join([
        sys.executable, str(RESTART), str(pidfile), "--log", str(log), "--cwd", str(tmp_path),
        "--wait-url", f"{peer.url}/status", "--", *argv])
    server = Restartable(peer.url, env, pidfile, process.pid, restart)
    try:
        _wait_until_listening(peer, log)
        yield server
    finally:
        stop_process(process)
        if server.pid() != process.pid:
            _stop(server.pid())


def bench(server: Restartable, tmp_path: Path, *args: str) -> tuple[int, str, dict[str, Any]]:
    report = tmp_path / "reconnect.json"
    # Our server needs the conversations and their members (the peer keeps none).
    setup = [] if "node" in args else ["--setup"]
    done = subprocess.run(
        [str(SCRIPT), "bench", server.url, "--scenario", "reconnect", *QUICK, *setup,
         "--restart-cmd", server.restart_cmd, "--json", str(report), *args],
        env=server.env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        check=False)
    assert report.is_file(), done.stdout + done.stderr
    return done.returncode, done.stdout + done.stderr, json.loads(report.read_text())


def stored(tmp_path: Path, run_id: str) -> int:
    with sqlite3.connect(tmp_path / "chat.db") as db:
        [(count,)] = db.execute("SELECT COUNT(*) FROM chat_messages WHERE client_message_id "
                                "LIKE ?", (run_id + ".%",)).fetchall()
    return int(count)


def test_every_client_comes_back_rejoins_with_since_and_misses_nothing(
    restartable: Restartable, tmp_path: Path
) -> None:
    code, output, report = bench(restartable, tmp_path)
    assert code == 0, output
    storm = report["reconnect"]
    assert storm["restart"]["exit_code"] == 0, storm["restart"]
    assert restartable.pid() != restartable.first_pid  # it really was killed and restarted
    assert (storm["clients"], storm["dropped"], storm["back"], storm["not_back"]) == (
        CLIENTS, CLIENTS, CLIENTS, 0)
    assert 0 < storm["first_back_s"] <= storm["all_back_s"] < 60
    assert storm["back_after_kill_ms"]["count"] == CLIENTS
    # The clients came back spread out by the jittered back-off, not in one instant.
    assert storm["back_after_kill_ms"]["max"] - storm["back_after_kill_ms"]["p50"] > 0
    before, during, after = (storm["phases"][name] for name in (
        "before", "during_kill", "after_return"))
    # Before: members 0 and 1 of each conversation said hello, heard by the 4 others.
    assert before["sent"] == before["acked"] == 2 * CONVERSATIONS
    assert before["expected"] == before["deliveries"] == 2 * CONVERSATIONS * (GROUP - 1)
    # During: load until the kill; what was acknowledged reached every member.
    assert during["acked"] > 0 and during["losses"] == 0
    # After: member 0 of each conversation sent as soon as it was back; every other
    # member got it, live or replayed by `since` when it rejoined later.
    assert storm["sent_after_return"] == after["acked"] == CONVERSATIONS
    assert after["expected"] == after["deliveries"] == CONVERSATIONS * (GROUP - 1)
    assert storm["missed"] == storm["missed_acked_before_kill"] == 0
    assert storm["missed_acked_after_return"] == 0
    assert report["losses"] == 0 and report["errors"]["total"] == 0 and report["ok"] is True
    assert f"{CLIENTS}/{CLIENTS} rejoined with since" in output
    assert "missed       0" in output
    # The server stored every message acknowledged (and maybe some whose ack the kill cut).
    acked = before["acked"] + during["acked"] + after["acked"]
    assert acked <= stored(tmp_path, report["parameters"]["run_id"]) <= (
        acked + storm["unacked_at_kill"])


def test_without_since_the_members_back_late_miss_what_was_sent_before_they_rejoined(
    restartable: Restartable, tmp_path: Path
) -> None:
    """A server without `since` replay, as far as the clients can tell: the same run
    must then count messages as missed, or its 0 above would prove nothing."""
    code, output, report = bench(restartable, tmp_path, "--no-since")
    storm = report["reconnect"]
    assert storm["back"] == CLIENTS and storm["not_back"] == 0, output
    after = storm["phases"]["after_return"]
    assert after["acked"] == CONVERSATIONS
    # Member 0 sent as soon as it was back; the members who rejoined after it never
    # got that message: nothing replays it to them.
    assert 0 < storm["missed_acked_after_return"] == after["losses"]
    assert after["deliveries"] == after["expected"] - after["losses"]
    assert storm["missed"] >= storm["missed_acked_after_return"]
    assert report["ok"] is False and code == 1
    assert "rejoined WITHOUT since" in output


def test_the_node_peer_which_keeps_nothing_has_every_client_back_but_misses_messages(
    restartable_peer: Restartable, tmp_path: Path
) -> None:
    """Side by side: the same run against the peer, which ignores `since`."""
    code, output, report = bench(restartable_peer, tmp_path, "--target", "node")
    storm = report["reconnect"]
    assert storm["restart"]["exit_code"] == 0, storm["restart"]
    assert restartable_peer.pid() != restartable_peer.first_pid
    assert storm["back"] == CLIENTS and storm["not_back"] == 0, output
    assert storm["all_back_s"] is not None
    after = storm["phases"]["after_return"]
    assert after["acked"] == CONVERSATIONS
    assert 0 < storm["missed_acked_after_return"] == after["losses"]
    assert report["ok"] is False and code == 1
