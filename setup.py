"""Puts the browser client's bundle into the sdist and the wheel (pyproject.toml has the rest).

/client/chat-manager.js is built from client/ by esbuild (Node.js), and the build is
git-ignored. A production server should not need Node.js: so `pip wheel .` or
`python -m build` in a checkout builds the bundle first (`npm ci` when
client/node_modules is missing or older than the lock, then `npm run build`, what
`make client` does), and the sdist carries the bundle instead of client/, so a wheel
built from the sdist needs no Node.js either. A build that can neither build nor find
the bundle stops with what to do, rather than ship a package whose page 404s.
An editable install (`make install`) is left alone: there `make client` builds into
the source tree the server serves from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
CLIENT = ROOT / "client"
BUNDLE = ROOT / "src" / "ecigdis_ws" / "static" / "build" / "chat-manager.js"


class BundleMissing(SystemExit):
    """Ends the build with the reason and the fix, not a traceback."""


def _modules_outdated() -> bool:
    stamp = CLIENT / "node_modules" / ".installed"
    lock = CLIENT / "package-lock.json"
    return not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime


def build_client() -> None:
    """Build the bundle from client/ when this is a checkout; else require it present."""
    if not (CLIENT / "package.json").is_file():
        if BUNDLE.is_file():
            return  # an sdist: it carries the bundle, and no client/ to build it from
        raise BundleMissing(f"error: {BUNDLE.relative_to(ROOT)} is missing and there is no "
                            "client/ to build it from: build from a git checkout")
    npm = shutil.which("npm")
    if npm is None:
        raise BundleMissing(
            "error: building ecigdis-ws needs Node.js 18+ and npm, to bundle the browser "
            "client (client/) into /client/chat-manager.js. Install them on the machine "
            "that builds the package (not on the server: the wheel carries the bundle), "
            "or install from a wheel or sdist built elsewhere.")
    if _modules_outdated():
        _npm(npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
        (CLIENT / "node_modules" / ".installed").touch()
    _npm(npm, "run", "--silent", "build")


def _npm(npm: str, *args: str) -> None:
    try:
        subprocess.run([npm, *args], cwd=CLIENT, check=True, env=os.environ.copy())
    except subprocess.CalledProcessError as exc:
        raise BundleMissing(f"error: `npm {' '.join(args)}` in client/ failed "
                            f"(exit {exc.returncode}); see its output above") from None


class BuildPyWithClient(build_py):
    def run(self) -> None:
        if not self.editable_mode:
            build_client()
            # The package-data globs may have been expanded before the bundle existed.
            vars(self).pop("data_files", None)
        super().run()


class SdistWithClient(sdist):
    def run(self) -> None:
        build_client()
        super().run()


setup(cmdclass={"build_py": BuildPyWithClient, "sdist": SdistWithClient})
