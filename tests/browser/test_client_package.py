"""client/ as an npm package: socket.io-client from npm, JSDoc types that check."""

from __future__ import annotations

import json
import shutil
import subprocess

from tests.browser.support import BUNDLE, REPO

CLIENT = REPO / "client"
TYPECHECK_TIMEOUT_S = 120


def test_socket_io_client_4_comes_from_the_npm_lockfile_not_from_the_repository() -> None:
    package = json.loads((CLIENT / "package.json").read_text(encoding="utf-8"))
    assert package["dependencies"]["socket.io-client"].startswith("^4.")
    lock = json.loads((CLIENT / "package-lock.json").read_text(encoding="utf-8"))
    locked = lock["packages"]["node_modules/socket.io-client"]
    assert locked["version"].startswith("4.")
    assert locked["integrity"].startswith("sha512-")
    # Nothing of socket.io-client is kept in the repository by hand.
    tracked = subprocess.run(["git", "ls-files", "client"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    assert not [path for path in tracked if "node_modules" in path or "dist" in path]


def test_the_jsdoc_types_of_chat_manager_check_under_strict_typescript(built_client: str) -> None:
    npm = shutil.which("npm")
    assert npm is not None
    done = subprocess.run([npm, "run", "--silent", "typecheck"], cwd=CLIENT, capture_output=True,
                          text=True, timeout=TYPECHECK_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_bundle_is_one_self_contained_es_module(built_client: str) -> None:
    source = BUNDLE.read_text(encoding="utf-8")
    # esbuild inlined socket.io-client: no import of anything left to fetch.
    assert "from\"socket.io-client\"" not in source.replace(" ", "")
    assert "import(" not in source
    assert "export{" in source.replace(" ", "")
    assert "ChatManager" in source
