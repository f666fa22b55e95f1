"""What a test needs from the machine (a database, Redis, Node.js, Chromium, nginx…).

Without it, a local run skips the test and says how to get it; under CI=true,
where `.ci/run` installs and starts everything, a missing dependency is a failure,
so a green CI run never hides a skipped test.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def unavailable(reason: str) -> NoReturn:
    """Skip the test with `reason`, or fail it under CI=true."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)
