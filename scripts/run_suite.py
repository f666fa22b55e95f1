"""The whole suite on every core (pytest-xdist), and proof that all of it ran.

`make test` runs this. A parallel run can lose tests quietly: a worker that crashes,
a parametrization that differs between workers, a generated test (schemathesis,
hypothesis) that one worker does not collect. So the tests a serial collection
lists are counted first, the parallel run writes a JUnit report, and the run fails
unless the report holds every one of them, whatever pytest's exit code says.

    python scripts/run_suite.py [pytest arguments...]

The few modules that must run whole in one process (their last test checks what
the others saw: tests/conftest.py, ONE_PROCESS_MODULES) run in a pytest of their own
beside the parallel one; both reports count. Extra arguments go to every pytest run
(a path, `-k`, `-x`). `make test-serial` runs the suite in one process, for debugging.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

# pytest's exit code when it collected nothing: a failure here, never a pass.
NO_TESTS_COLLECTED = 5


def collected(args: list[str]) -> int:
    """How many tests a serial collection lists."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:xdist", *args],
        capture_output=True, text=True, check=False,
    )
    match = re.search(r"^(\d+) tests? collected", done.stdout, re.MULTILINE)
    if done.returncode not in (0, NO_TESTS_COLLECTED) or match is None:
        sys.stdout.write(done.stdout + done.stderr)
        raise SystemExit("the serial collection failed")
    return int(match.group(1))


def executed(report: Path) -> int:
    """Test cases in a JUnit report: passed, failed, errored and skipped alike."""
    return sum(1 for _ in ElementTree.parse(report).getroot().iter("testcase"))


def main() -> int:
    args = sys.argv[1:]
    expected = collected(args)
    # Two workers per core: over half of a test's time is spent waiting on a
    # server process, a socket or a timer (the suite's CPU time is about 1.3 cores'
    # worth at two workers), so twice the cores keeps both busy (two workers: 9 min
    # 18 s of pytest on two quiet cores; four: 7 min 3 s).
    workers = os.environ.get("PYTEST_WORKERS") or str(2 * (os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as folder:
        reports = [Path(folder) / "parallel.xml", Path(folder) / "alone.xml"]
        # The modules that must run whole in one process (tests/conftest.py,
        # ONE_PROCESS_MODULES) run in a pytest of their own, beside the rest.
        alone = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:xdist", "-q",
             f"--junitxml={reports[1]}", *args],
            env={**os.environ, "RUN_SUITE_PHASE": "serial"},
        )
        status = subprocess.run(
            # The slowest tests listed: the suite has a time budget (issue 26: 6 min
            # on two quiet cores), and this says where it goes.
            [sys.executable, "-m", "pytest", "-n", workers, "--dist", "worksteal",
             "--durations=30", "--durations-min=5", f"--junitxml={reports[0]}", *args],
            env={**os.environ, "RUN_SUITE_PHASE": "parallel"}, check=False,
        ).returncode
        statuses = [status, alone.wait()]
        ran = sum(executed(report) for report in reports if report.exists())
    print(f"run_suite: {ran} tests executed, {expected} collected serially")
    if all(code == NO_TESTS_COLLECTED for code in statuses):
        print("run_suite: pytest collected no tests", file=sys.stderr)
        return 1
    if ran != expected:
        print(f"run_suite: {expected - ran} of the collected tests did not run",
              file=sys.stderr)
        return 1
    failed = [code for code in statuses if code not in (0, NO_TESTS_COLLECTED)]
    return failed[0] if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
