"""The wheel built from a clean checkout carries the browser client and serves it.

A production install gets /client/chat-manager.js without Node.js on the server:
setup.py builds the bundle (npm) when the package is built. This test does what
DEPLOYMENT_GUIDE.md does, as fast as it honestly can:

- `git clone` of this repository's HEAD into a scratch directory, where the
  git-ignored bundle and client/node_modules do not exist (commit a change to
  setup.py before running this test on it);
- `pip wheel` there, without build isolation: the project's venv already has the
  setuptools that pyproject.toml asks for, and fetching it again from PyPI would
  only add time (npm ci fills client/node_modules from npm's cache when it can);
- a fresh virtualenv whose site-packages has a .pth naming the project venv's
  site-packages, so the wheel's dependencies are importable without downloading
  them; `pip install --no-index` of the wheel then checks they are all there and
  installs ecigdis-ws itself into the new venv (a .pth line adds a directory, not
  the .pth files in it, so the project's editable install stays out of sight);
- that venv's `ecigdis-ws serve`, run outside the repository, asked for the bundle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from tests import needs
from tests.deploy.support import server_env, wait_for_health
from tests.support import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE = "ecigdis_ws/static/build/chat-manager.js"
# npm ci (from npm's cache) and the wheel build take seconds; this bounds a hang.
BUILD_TIMEOUT_S = 180
SERVER_UP_TIMEOUT_S = 20


def sh(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"{' '.join(map(str, command))}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_checkout(tmp_path: Path) -> Path:
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        needs.unavailable("the packaging test clones the repository: needs git and a checkout")
    if shutil.which("npm") is None:
        needs.unavailable("building the wheel bundles the browser client: needs Node.js/npm")
    clone = tmp_path / "clone"
    sh("git", "clone", "--quiet", REPO_ROOT, clone, cwd=tmp_path)
    assert not (clone / "src" / BUNDLE).exists()  # git-ignored: only a build makes it
    return clone


def venv_inheriting_dependencies(path: Path) -> Path:
    """A venv without ecigdis-ws whose imports fall back on the project venv's packages."""
    sh(sys.executable, "-m", "venv", "--without-pip", path, cwd=path.parent)
    python = path / "bin" / "python"
    purelib = sh(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                 cwd=path).strip()
    project_packages = sysconfig.get_path("purelib")
    (Path(purelib) / "project-dependencies.pth").write_text(project_packages + "\n")
    return python


def test_a_wheel_from_a_clean_checkout_serves_the_client_bundle(tmp_path: Path) -> None:
    clone = clean_checkout(tmp_path)
    dist = tmp_path / "dist"
    sh(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
       "--wheel-dir", dist, clone, cwd=tmp_path)
    [wheel] = dist.glob("ecigdis_ws-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert BUNDLE in archive.namelist()
        bundled = archive.read(BUNDLE)

    python = venv_inheriting_dependencies(tmp_path / "venv")
    sh(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-index",
       wheel, cwd=tmp_path)
    where = sh(python, "-c", "import ecigdis_ws; print(ecigdis_ws.__file__)", cwd=tmp_path)
    assert where.startswith(str(tmp_path / "venv")), where

    workdir = tmp_path / "server"
    workdir.mkdir()
    env = server_env(workdir, MIGRATE_ON_START="true")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [tmp_path / "venv" / "bin" / "ecigdis-ws", "serve", "--host", "127.0.0.1",
             "--port", str(port)], cwd=workdir, env=env, stdout=output, stderr=output)
    try:
        wait_for_health(url, SERVER_UP_TIMEOUT_S, alive=lambda: process.poll() is None, log=log)
        with urllib.request.urlopen(f"{url}/client/chat-manager.js", timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/javascript")
            assert response.read() == bundled
    finally:
        process.kill()
        process.wait()


def test_the_sdist_carries_the_bundle_and_builds_a_wheel_without_node(tmp_path: Path) -> None:
    """What `python -m build` does: the sdist, then a wheel from it (here on a PATH
    without npm, as on a server)."""
    clone = clean_checkout(tmp_path)
    dist = tmp_path / "dist"
    build_sdist = f"from setuptools import build_meta; print(build_meta.build_sdist({str(dist)!r}))"
    name = sh(sys.executable, "-c", build_sdist, cwd=clone).strip().splitlines()[-1]
    with tarfile.open(dist / name) as sdist:
        members = sdist.getnames()
        assert f"{name.removesuffix('.tar.gz')}/src/{BUNDLE}" in members
        assert not any("/client/" in member for member in members)
        sdist.extractall(tmp_path / "unpacked", filter="data")
    [unpacked] = (tmp_path / "unpacked").iterdir()
    without_node = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}
    build_wheel = f"from setuptools import build_meta; print(build_meta.build_wheel({str(dist)!r}))"
    wheel = sh(sys.executable, "-c", build_wheel, cwd=unpacked,
               env=without_node).strip().splitlines()[-1]
    with zipfile.ZipFile(dist / wheel) as archive:
        assert BUNDLE in archive.namelist()


def test_building_from_a_checkout_without_npm_stops_saying_what_to_install(
    tmp_path: Path,
) -> None:
    clone = clean_checkout(tmp_path)
    python_only = {"PATH": str(Path(sys.executable).parent) + os.pathsep + "/nonexistent",
                   "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", tmp_path / "dist", clone],
        cwd=tmp_path, env=python_only, capture_output=True, text=True,
        timeout=BUILD_TIMEOUT_S, check=False)
    assert done.returncode != 0
    assert "needs Node.js 18+ and npm" in done.stdout + done.stderr
    assert not list((tmp_path / "dist").glob("*.whl"))
