"""docs/openapi.yaml is the truth: schemathesis generates requests for every
documented operation, valid and invalid, sends them to a real `ecigdis-ws serve`
process and checks every answer against the document (status codes, content
type, headers, body schema) and that none is a server error.

SQLite only (the backend does not change the shapes; the other REST tests run
on both). The server runs as a separate process because schemathesis calls it
synchronously. CONVERSATION_ACCESS=open, so that generated conversation ids
reach the success paths (a member-only server would answer most with 403), and
no rate limits, so that the volume of cases does not turn into 429s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis import checks

from ecigdis_ws.clock import SystemClock
from ecigdis_ws.services.auth import mint_token
from tests.support import free_port
from tests.support import test_settings as settings_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
API_KEY = "schema-test-key-0123456789abcdef0123456789"
# Cases per operation and mode: nineteen operations, both modes, about a minute.
MAX_EXAMPLES = 40
# What the document's path examples name (seed(), below).
SEEDED_CONVERSATION = 1
SEEDED_MESSAGES = 8
START_TIMEOUT_S = 20.0

schema = schemathesis.openapi.from_path(str(DOC))
schema.config.generation.update(max_examples=MAX_EXAMPLES)
# Status codes answered, per operation, so the last test can tell the cases
# reached both the success paths and the refusals.
ANSWERED: defaultdict[str, set[int]] = defaultdict(set)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A real server process; its URL and the headers that authenticate a user
    (Bearer) and the main site (X-API-Key) alike."""
    workdir = tmp_path_factory.mktemp("schema")
    port = free_port()
    env = {
        "NODE_ENV": "test",
        "WS_HOST": "127.0.0.1",
        "WS_PORT": str(port),
        "DATABASE_URL": f"sqlite:///{workdir / 'chat.db'}",
        "MIGRATE_ON_START": "true",
        "JWT_SECRET": "schema-test-secret-that-is-long-enough-for-it",
        "API_KEY": API_KEY,
        "CONVERSATION_ACCESS": "open",
        "LONG_POLL_TIMEOUT_MS": "100",
        "RATE_LIMIT_EVENTS": "0",
        "RATE_LIMIT_MESSAGES": "0",
        "RATE_LIMIT_CONVERSATIONS": "0",
        "LOG_LEVEL": "warning",
    }
    log = (workdir / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "ecigdis_ws", "serve"],
        env={**os.environ, **env}, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start: {(workdir / 'server.log').read_text()}")
            time.sleep(0.1)
        settings = settings_for(workdir, **env)
        token = mint_token(settings, SystemClock(), 1, "schema tester", 3600)
        headers = {"Authorization": f"Bearer {token}", "X-API-Key": API_KEY}
        seed(url, headers)
        yield url, headers
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
    output = (workdir / "server.log").read_text()
    assert "Traceback" not in output, output


def seed(url: str, headers: dict[str, str]) -> None:
    """What the document's examples name (components/parameters): conversation 1,
    made over REST by the test's user, so its owner (renames, pins, versions and
    deletions of others' messages are the owners' and admins'), and messages 1-8
    of that user in it (an edit is the sender's): each operation that changes a
    message has its own example, so the cases of one (a deletion) do not leave
    another without a success."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            url + path, data=json.dumps(body).encode(), method="POST",
            headers={**headers, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            reply: dict[str, Any] = json.loads(answer.read())
            return reply

    created = post("/api/messenger/conversations", {"title": "seeded", "members": [2]})
    assert created["id"] == SEEDED_CONVERSATION, created
    for n in range(1, SEEDED_MESSAGES + 1):
        sent = post(f"/api/messenger/conversations/{SEEDED_CONVERSATION}/messages",
                    {"messageId": f"seed-{n}", "text": f"seeded message {n}"})
        assert sent["id"] == n, sent


@schema.parametrize()
def test_every_answer_matches_the_openapi_document(
    case: Any, served: tuple[str, dict[str, str]]
) -> None:
    url, headers = served
    response = case.call(base_url=url, headers=headers)
    ANSWERED[case.operation.label].add(response.status_code)
    case.validate_response(
        response,
        headers=headers,
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_headers_conformance,
            checks.response_schema_conformance,
        ],
    )


def test_the_generated_cases_reached_every_operations_successes_and_refusals() -> None:
    operations = {operation.ok().label for operation in schema.get_all_operations()}
    assert set(ANSWERED) == operations, "run the whole module: the cases above fill this"
    for label, statuses in ANSWERED.items():
        assert any(200 <= s < 300 for s in statuses), f"{label}: no success in {statuses}"
        assert any(400 <= s < 500 for s in statuses), f"{label}: no refusal in {statuses}"
    print({label: sorted(statuses) for label, statuses in sorted(ANSWERED.items())})
