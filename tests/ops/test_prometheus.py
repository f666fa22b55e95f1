"""deploy/prometheus: promtool accepts the config and the rules, the rules' own unit
tests pass, and every metric the rules name is one a real server exports.

promtool comes from Debian's `prometheus` package, installed by the session fixture
when missing (as tests/deploy/ does for nginx); CI=true makes its absence a failure.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.support import DEPLOY, apt_tool, run_bounded, unavailable
from tests.support import RunningServer

PROMETHEUS = DEPLOY / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULES = PROMETHEUS / "ecigdis-ws.rules.yml"
RULE_TESTS = PROMETHEUS / "ecigdis-ws.rules.test.yml"
PROMTOOL_TIMEOUT_S = 60
ALERTS = {
    "EcigdisWsDown",
    "EcigdisWsDatabaseDisconnected",
    "EcigdisWsRedisDisconnected",
    "EcigdisWsHighErrorRate",
}
# Made by Prometheus itself for every scrape, not exported by the server.
SCRAPE_METRICS = {"up"}
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")

MakeServer = Callable[..., AbstractAsyncContextManager[RunningServer]]


@pytest.fixture(scope="session")
def promtool() -> str:
    return apt_tool("prometheus", "promtool")


def promtool_run(promtool: str, *args: str, cwd: Path = PROMETHEUS) -> tuple[int, str]:
    done = run_bounded([promtool, *args], PROMTOOL_TIMEOUT_S, cwd=cwd)
    return done.returncode, done.stdout + done.stderr


def rule_expressions(text: str) -> dict[str, str]:
    """{alert name: expr} of a rules file written as ours is (`expr:` inline or `|`).

    promtool checks the YAML itself; this only has to find the expressions, and
    fails when it does not find one per alert.
    """
    found: dict[str, str] = {}
    lines = text.splitlines()
    alert = None
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("- alert:"):
            alert = stripped.split(":", 1)[1].strip()
        elif stripped.startswith("expr:") and alert is not None:
            inline = stripped.split(":", 1)[1].strip()
            if inline != "|":
                found[alert] = inline
                continue
            indent = len(line) - len(line.lstrip())
            block = []
            for following in lines[index + 1:]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following.strip())
            found[alert] = " ".join(part for part in block if part)
    assert len(found) == text.count("- alert:"), found
    return found


def test_config_passes_promtool_check_config(promtool: str) -> None:
    status, output = promtool_run(promtool, "check", "config", str(CONFIG))
    assert status == 0, output
    # check config also loads and checks the rule file it names.
    assert "SUCCESS: 4 rules found" in output, output


def test_rules_pass_promtool_check_rules(promtool: str) -> None:
    status, output = promtool_run(promtool, "check", "rules", str(RULES))
    assert status == 0, output
    assert "SUCCESS: 4 rules found" in output


def test_rules_define_the_four_alerts() -> None:
    assert set(rule_expressions(RULES.read_text(encoding="utf-8"))) == ALERTS


def test_each_alert_fires_for_the_failing_node_only_after_its_delay(promtool: str) -> None:
    status, output = promtool_run(promtool, "test", "rules", str(RULE_TESTS))
    assert status == 0, output
    assert "SUCCESS" in output


def test_the_rule_unit_tests_catch_a_rule_that_never_fires(
    promtool: str, tmp_path: Path
) -> None:
    """A copy whose database rule can never be true must fail the unit tests."""
    broken = RULES.read_text(encoding="utf-8").replace(
        'dependency="database"} == 0', 'dependency="database"} == 2')
    assert broken != RULES.read_text(encoding="utf-8")
    (tmp_path / RULES.name).write_text(broken, encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    status, output = promtool_run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert status != 0
    assert "EcigdisWsDatabaseDisconnected" in output


def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {url} not reachable ({exc}); start redis-server or set "
                    "TEST_REDIS_URL")
    return url


async def test_every_metric_the_rules_name_is_exported_by_a_running_server(
    make_server: MakeServer,
) -> None:
    selectors = {
        name
        for expression in rule_expressions(RULES.read_text(encoding="utf-8")).values()
        for name in SELECTOR.findall(expression)
    }
    assert selectors - SCRAPE_METRICS == {
        "ecigdis_ws_dependency_up", "ecigdis_ws_errors_total",
        "ecigdis_ws_events_received_total",
    }
    prefix = f"ecigdis-ws-prom-{secrets.token_hex(3)}"
    async with make_server(REDIS_URL=redis_url(), REDIS_KEY_PREFIX=prefix) as server:
        # A labelled counter has no sample until something increments it: one event
        # that fails (UNAUTHENTICATED) gives both the event and the error a sample.
        client = await server.client()
        reply = await client.call("conversation:join", {"conversationId": 1})
        assert reply["error"]["code"] == "UNAUTHENTICATED"
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/metrics") as got:
            assert got.status == 200
            text = await got.text()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    names = {name for name, _ in samples}
    assert selectors - SCRAPE_METRICS <= names, sorted(names)
    values = {(name, labels): None for name, labels in samples}
    assert ("ecigdis_ws_dependency_up", (("dependency", "database"),)) in values
    assert ("ecigdis_ws_dependency_up", (("dependency", "redis"),)) in values
    assert 'ecigdis_ws_dependency_up{dependency="database"} 1.0' in text.splitlines()
    assert 'ecigdis_ws_dependency_up{dependency="redis"} 1.0' in text.splitlines()


async def test_a_node_without_redis_exports_no_redis_dependency(server: RunningServer) -> None:
    """So EcigdisWsRedisDisconnected never fires for a single node."""
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/metrics") as got:
        text = await got.text()
    assert 'ecigdis_ws_dependency_up{dependency="database"} 1.0' in text.splitlines()
    assert 'dependency="redis"' not in text
