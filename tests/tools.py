"""Install the npm tools the tests drive, before pytest starts: `make test` runs
`python -m tests.tools`, so that the suite's time is its tests' time and not
npm's (Artillery alone takes about a minute to install on a fresh clone).

Each tool is pinned where its tests use it, and each test still installs what
is missing itself, so running pytest directly works the same. A tool that cannot
be installed here is reported; its tests then skip locally, or fail under
CI=true.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import pytest

from tests.browser.support import playwright_core
from tests.deploy.support import npm_tool
from tests.deploy.test_artillery import ARTILLERY_VERSION
from tests.deploy.test_pm2 import PM2_VERSION
from tests.e2e.test_node_client import install_node_packages

TOOLS: dict[str, Callable[[], object]] = {
    f"artillery {ARTILLERY_VERSION}": lambda: npm_tool("artillery", ARTILLERY_VERSION, "artillery"),
    f"pm2 {PM2_VERSION}": lambda: npm_tool("pm2", PM2_VERSION, "pm2"),
    "playwright-core": playwright_core,
    "socket.io-client for tests/e2e": install_node_packages,
}


def main() -> int:
    for name, install in TOOLS.items():
        started = time.monotonic()
        try:
            install()
        except (pytest.skip.Exception, pytest.fail.Exception) as exc:
            print(f"test tools: {name}: not installed: {exc}", file=sys.stderr)
            continue
        print(f"test tools: {name} ready in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
