from __future__ import annotations

import os
import resource
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import engineio.payload
import pytest

from tests.backends import BACKENDS, database_env, mariadb_url
from tests.support import RunningServer, running_server

__all__ = ["mariadb_url"]

# The tests' own python-engineio clients refuse a polling response of more than 16
# packets ("Unexpected packet from server"), which the server sends whenever that
# many events queued for a socket between two polls, as the Node server does;
# socket.io-client reads any number, so these clients do too. The server decodes
# with its own subclass (transport/socketio_overrides/polling.py), unchanged by this.
engineio.payload.Payload.max_decode_packets = 10_000


# SUITE_CPU_REPORT=folder: each worker writes the CPU seconds every test cost (its
# own process's, plus the children it reaped: server processes, Node, Chromium)
# beside the wall time, so the suite's budget can be spent where it goes
# (scripts/suite_cpu.py sums them). The machine is CPU-bound at four workers, so
# wall times alone only say which tests waited.
CPU_REPORT = os.environ.get("SUITE_CPU_REPORT")


def _cpu_seconds() -> float:
    own, children = (resource.getrusage(who) for who in
                     (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    if CPU_REPORT is None:
        return (yield)
    cpu, wall = _cpu_seconds(), time.monotonic()
    try:
        return (yield)
    finally:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(Path(CPU_REPORT) / f"{worker}-{os.getpid()}.tsv", "a") as report:
            report.write(f"{item.nodeid}\t{_cpu_seconds() - cpu:.3f}"
                         f"\t{time.monotonic() - wall:.3f}\n")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): run only against these database backends"
    )


# Modules whose last test checks what the tests before it saw in the same process
# (the schemathesis cases fill a table the coverage test reads). scripts/run_suite.py
# runs them in one process of their own beside the parallel run of the rest:
# RUN_SUITE_PHASE=parallel leaves them out, =serial keeps only them.
ONE_PROCESS_MODULES = ("tests/transport/test_rest_schema.py",)


# Where the parallel run spends its longest tests (run_suite lists the slowest):
# collected first, so that xdist's work stealing ends on short tests, not with one
# worker idle while the other finishes a 40 s soak it picked up last.
SLOW_FIRST = ("tests/test_soak.py", "tests/browser/", "tests/bench/", "tests/cluster/",
              "tests/deploy/", "tests/test_packaging.py", "tests/e2e/",
              "tests/storage/test_mariadb_scale.py", "tests/test_docs_tour.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    phase = os.environ.get("RUN_SUITE_PHASE")
    if phase not in ("parallel", "serial"):
        return
    keep, drop = [], []
    for item in items:
        alone = item.nodeid.split("::")[0] in ONE_PROCESS_MODULES
        (keep if alone == (phase == "serial") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    # A stable sort: each module stays whole and in order (module fixtures).
    items[:] = sorted(keep, key=_slowness_rank)


def _slowness_rank(item: pytest.Item) -> int:
    """SLOW_FIRST's order (longest first), then every other test as collected."""
    for rank, prefix in enumerate(SLOW_FIRST):
        if item.nodeid.startswith(prefix):
            return rank
    return len(SLOW_FIRST)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that starts a server or opens storage runs once per backend,
    unless it is marked `backends(...)` (a fault that only one backend can show)."""
    if "backend_name" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("backends")
        names = marker.args if marker else BACKENDS
        metafunc.parametrize("backend_name", names)


@pytest.fixture
def db_env(backend_name: str, request: pytest.FixtureRequest) -> dict[str, str]:
    return database_env(backend_name, request)


@pytest.fixture
async def server(tmp_path: Path, db_env: dict[str, str]) -> AsyncIterator[RunningServer]:
    """The real server with default settings on a free loopback port."""
    async with running_server(tmp_path, **db_env) as running:
        yield running


@pytest.fixture
def make_server(
    tmp_path: Path, db_env: dict[str, str]
) -> Callable[..., AbstractAsyncContextManager[RunningServer]]:
    """Start a server with settings overridden as environment variables."""

    def start(**env: str) -> AbstractAsyncContextManager[RunningServer]:
        return running_server(tmp_path, **{**db_env, **env})

    return start
