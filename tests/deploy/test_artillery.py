"""deploy/artillery/load-test.yml, run by a real Artillery against a real server.

The shipped scenario runs unchanged with its `smoke` environment (3 s, 2 new virtual
users a second): each user connects with its own token from a CSV payload, joins a
conversation and sends three messages, and every acknowledgement must be
{ ok: true, status: 'sent' }. The test reads Artillery's JSON report (--output): no
errors, every virtual user completed; and the server's /metrics: every message stored.

Artillery (npm, pinned below; 2.0.21 is the last release that supports Node.js 20)
is installed once into tests/deploy/.cache. It sends an anonymised "test run" event
to PostHog even with ARTILLERY_DISABLE_TELEMETRY set, and without internet access
its DNS lookup keeps the process alive some 12 s after the report is written; a
--require hook given through NODE_OPTIONS makes `require('posthog-node')` fail,
which artillery's telemetry module catches, turning telemetry into a no-op.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.support import (
    DEPLOY,
    Json,
    Node,
    cli,
    get_json,
    npm_tool,
    run_bounded,
    server_env,
    serving,
    token,
)

ARTILLERY_VERSION = "2.0.21"
SCENARIO = DEPLOY / "artillery" / "load-test.yml"
USERS = 10  # one token each; the smoke phase starts 6 virtual users
EMITS_PER_USER = 4  # conversation:join and three message:send
MESSAGES_PER_USER = 3
RUN_TIMEOUT_S = 90

NO_TELEMETRY = """\
// Written by tests/deploy/test_artillery.py: artillery's lib/telemetry.js loads
// posthog-node inside try/catch; failing that require turns telemetry off.
const Module = require('module');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (request === 'posthog-node') throw new Error('telemetry disabled by the test');
  return resolve.call(this, request, ...rest);
};
"""


@dataclass(frozen=True)
class Artillery:
    executable: Path
    hook: Path  # the --require hook that keeps telemetry off


@pytest.fixture(scope="session")
def artillery(tmp_path_factory: pytest.TempPathFactory) -> Artillery:
    executable = npm_tool("artillery", ARTILLERY_VERSION, "artillery")
    hook = tmp_path_factory.mktemp("artillery-hook") / "no-telemetry.cjs"
    hook.write_text(NO_TELEMETRY, encoding="utf-8")
    return Artillery(executable, hook)


@dataclass(frozen=True)
class Target:
    node: Node
    workdir: Path
    conversation_id: int
    tokens: Path  # the CSV payload: one token per line


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    workdir = tmp_path_factory.mktemp("artillery")
    env = server_env(workdir, MIGRATE_ON_START="false")
    cli(env, "migrate")
    members = ",".join(str(user) for user in range(1, USERS + 1))
    conversation = int(cli(env, "conversation", "create", "--title", "Load", "--members", members))
    tokens = workdir / "tokens.csv"
    tokens.write_text("".join(f"{token(user, f'Load {user}')}\n"
                              for user in range(1, USERS + 1)), encoding="utf-8")
    with serving(env, "load-target") as node:
        yield Target(node, workdir, conversation, tokens)


def run_scenario(
    artillery: Artillery, target: Target, name: str, *args: str
) -> tuple[int, str, Path]:
    """`artillery run` of the shipped scenario; exit status, output and the report path."""
    report = target.workdir / f"{name}.json"
    command = [
        str(artillery.executable), "run", "--target", target.node.url,
        "--payload", str(target.tokens),
        "--variables", json.dumps({"conversationId": target.conversation_id}),
        "--output", str(report), *args, str(SCENARIO),
    ]
    env = {
        "PATH": f"{artillery.executable.parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(target.workdir),
        "ARTILLERY_DISABLE_TELEMETRY": "true",
        "NODE_OPTIONS": f"--require {artillery.hook}",
    }
    done = run_bounded(command, RUN_TIMEOUT_S, env=env, cwd=target.workdir)
    return done.returncode, done.stdout + done.stderr, report


def counters(report: Path) -> dict[str, int]:
    loaded: Json = json.loads(report.read_text(encoding="utf-8"))
    found: dict[str, int] = loaded["aggregate"]["counters"]
    return found


@dataclass(frozen=True)
class SmokeRun:
    status: int
    output: str
    counters: dict[str, int]
    seconds: float
    stored_before: float
    stored_after: float


def messages_stored(node: Node) -> float:
    status, metrics = get_json(f"{node.url}/metrics?format=json")
    assert status == 200
    stored: float = metrics["ecigdis_ws_messages_stored_total"]
    return stored


@pytest.fixture(scope="module")
def smoke(artillery: Artillery, target: Target) -> SmokeRun:
    before = messages_stored(target.node)
    began = time.monotonic()
    status, output, report = run_scenario(artillery, target, "smoke", "--environment", "smoke")
    took = time.monotonic() - began
    assert report.is_file(), f"artillery exited {status} without a report:\n{output}"
    return SmokeRun(status, output, counters(report), took, before, messages_stored(target.node))


def test_smoke_run_exits_0(smoke: SmokeRun) -> None:
    assert smoke.status == 0, smoke.output


def test_smoke_run_reports_no_errors(smoke: SmokeRun) -> None:
    errors = {name: count for name, count in smoke.counters.items() if name.startswith("errors.")}
    assert errors == {}
    assert smoke.counters.get("vusers.failed", 0) == 0


def test_every_virtual_user_joined_sent_and_completed(smoke: SmokeRun) -> None:
    created = smoke.counters["vusers.created"]
    assert created >= 4  # 3 s at 2 a second
    assert smoke.counters["vusers.completed"] == created
    assert smoke.counters["socketio.emit"] == created * EMITS_PER_USER


def test_the_server_stored_every_message(smoke: SmokeRun) -> None:
    created = smoke.counters["vusers.created"]
    assert smoke.stored_after - smoke.stored_before == created * MESSAGES_PER_USER


def test_a_refused_token_shows_in_the_report(artillery: Artillery, target: Target) -> None:
    """The report check is not vacuous: one user whose token the server refuses."""
    bad = target.workdir / "bad-tokens.csv"
    bad.write_text(target.tokens.read_text(encoding="utf-8").replace(".", "x", 1),
                   encoding="utf-8")
    refused = Target(target.node, target.workdir, target.conversation_id, bad)
    status, output, report = run_scenario(artillery, refused, "refused", "--solo")
    assert report.is_file(), f"artillery exited {status} without a report:\n{output}"
    found = counters(report)
    assert found.get("vusers.failed") == 1, found
    assert any(name.startswith("errors.") for name in found), found
