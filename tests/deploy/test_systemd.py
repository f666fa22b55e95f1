"""deploy/systemd: both units pass `systemd-analyze verify` and score as hardened.

No systemd runs as PID 1 here (nor in most CI containers), so the units are checked
offline, the way systemd itself would load them:

- `systemd-analyze verify` loads a unit with all its dependencies and fails when,
  among other things, ExecStart's binary is not an executable file. The units name
  /opt/ecigdis-ws/.venv/bin/ecigdis-ws, which does not exist on a test machine, so
  each check runs with `--root=<scratch>`: a directory holding the unit under
  /etc/systemd/system/, a stub executable at the ExecStart path, and a copy of the
  host's /usr/lib/systemd/system (without it the default dependencies such as
  sysinit.target are "not found"). The shipped files are used unchanged.
- verify exits 0 on an unknown key or an invalid value (it only warns, as systemd
  would, ignoring the line), so a unit passes only with exit status 0 AND no output.
  Deliberately broken copies show that both kinds of problem are caught.
- `systemd-analyze security --offline=yes` scores the sandboxing from the files.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, apt_tool, run_bounded

UNITS = DEPLOY / "systemd"
PLAIN = "ecigdis-ws.service"
TEMPLATE = "ecigdis-ws@.service"
INSTANCE = "ecigdis-ws@8081.service"  # the template, as the unit for port 8081
EXEC_PATH = "/opt/ecigdis-ws/.venv/bin/ecigdis-ws"
SYSTEM_UNITS = [Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")]
ANALYZE_TIMEOUT_S = 30
# systemd-analyze security rates exposure from 0.0 (locked down) to 10.0; up to 2.0
# is "OK". --threshold takes it times ten and exits non-zero above it.
MAX_EXPOSURE = 2.0


@pytest.fixture(scope="session")
def systemd_analyze() -> str:
    return apt_tool("systemd", "systemd-analyze")


@pytest.fixture(scope="session")
def host_units(systemd_analyze: str) -> Path:
    for directory in SYSTEM_UNITS:
        if (directory / "sysinit.target").is_file():
            return directory
    pytest.fail(f"no sysinit.target in {SYSTEM_UNITS}, though systemd is installed")


def scratch_root(base: Path, host_units: Path, units: dict[str, str], stub: bool = True) -> Path:
    """A root directory for `systemd-analyze --root`: `units` (file name: text) in
    /etc/systemd/system, the host's system units, and a stub at ExecStart's path."""
    shutil.copytree(host_units, base / "usr/lib/systemd/system", symlinks=True)
    local = base / "etc/systemd/system"
    local.mkdir(parents=True)
    for name, text in units.items():
        (local / name).write_text(text, encoding="utf-8")
    if stub:
        executable = base / EXEC_PATH.lstrip("/")
        executable.parent.mkdir(parents=True)
        executable.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
        executable.chmod(0o755)
    return base


def verify(analyze: str, root: Path, unit: str) -> tuple[int, str]:
    """`systemd-analyze verify` of one unit in `root`: exit status and all output."""
    done = run_bounded([analyze, "verify", f"--root={root}", unit], ANALYZE_TIMEOUT_S,
                       env={"PATH": "/usr/bin:/bin", "SYSTEMD_LOG_COLOR": "0"})
    return done.returncode, (done.stdout + done.stderr).strip()


def shipped(name: str) -> str:
    return (UNITS / name).read_text(encoding="utf-8")


def directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of each setting, in order; comments and blanks skipped."""
    found: list[tuple[str, str, str]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        assert not line.endswith("\\"), f"continuation lines are not expected: {raw}"
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def settings(text: str, section: str) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for in_section, key, value in directives(text):
        if in_section == section:
            result.setdefault(key, []).append(value)
    return result


# -- verify ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("file_name", "unit"), [(PLAIN, PLAIN), (TEMPLATE, INSTANCE)])
def test_unit_passes_systemd_analyze_verify_without_a_warning(
    systemd_analyze: str, host_units: Path, tmp_path: Path, file_name: str, unit: str
) -> None:
    root = scratch_root(tmp_path, host_units, {file_name: shipped(file_name)})
    status, output = verify(systemd_analyze, root, unit)
    assert (status, output) == (0, "")


BREAKAGES = {
    # ExecStart names a file that is not there: verify fails.
    "missing binary": (PLAIN, EXEC_PATH, EXEC_PATH + "-typo", "is not executable", True),
    "missing binary in the template": (
        TEMPLATE, EXEC_PATH, EXEC_PATH + "-typo", "is not executable", True),
    # Mistakes systemd ignores with a warning: verify exits 0 but says so.
    "misspelt key": (PLAIN, "ProtectSystem=strict", "ProtectSytem=strict", "Unknown key", False),
    "invalid value": (PLAIN, "Restart=on-failure", "Restart=sometimes", "Failed to parse", False),
    "misspelt type": (TEMPLATE, "Type=notify", "Type=notfy", "Failed to parse", False),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_verify_catches_a_broken_copy(
    systemd_analyze: str, host_units: Path, tmp_path: Path, breakage: str
) -> None:
    file_name, good, bad, message, fails = BREAKAGES[breakage]
    text = shipped(file_name)
    assert text.count(good) >= 1
    root = scratch_root(tmp_path, host_units, {file_name: text.replace(good, bad)})
    status, output = verify(systemd_analyze, root, INSTANCE if "@" in file_name else PLAIN)
    assert message in output
    if fails:
        assert status != 0, output
    else:
        # Exit status 0: only the no-output rule of the test above catches these.
        assert status == 0, output


def test_verify_fails_without_the_stub_executable(
    systemd_analyze: str, host_units: Path, tmp_path: Path
) -> None:
    """The stub is what makes verify pass: the check of ExecStart is real."""
    root = scratch_root(tmp_path, host_units, {PLAIN: shipped(PLAIN)}, stub=False)
    status, output = verify(systemd_analyze, root, PLAIN)
    assert status != 0
    assert f"{EXEC_PATH} is not executable" in output


# -- hardening ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("file_name", "unit"), [(PLAIN, PLAIN), (TEMPLATE, INSTANCE)])
def test_unit_sandboxing_scores_ok(
    systemd_analyze: str, host_units: Path, tmp_path: Path, file_name: str, unit: str
) -> None:
    root = scratch_root(tmp_path, host_units, {file_name: shipped(file_name)})
    done = run_bounded(
        [systemd_analyze, "security", "--offline=yes", f"--root={root}",
         f"--threshold={int(MAX_EXPOSURE * 10)}", "--no-pager", unit],
        ANALYZE_TIMEOUT_S, env={"PATH": "/usr/bin:/bin", "SYSTEMD_LOG_COLOR": "0"},
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr


def test_sandboxing_score_would_catch_a_unit_without_hardening(
    systemd_analyze: str, host_units: Path, tmp_path: Path
) -> None:
    bare = "\n".join(
        f"{key}={value}" if key else f"[{section}]"
        for section, key, value in _with_headers(directives(shipped(PLAIN)))
        if not key or key in {"Description", "Type", "ExecStart", "WantedBy", "User", "Group"}
    )
    root = scratch_root(tmp_path, host_units, {PLAIN: bare + "\n"})
    done = run_bounded(
        [systemd_analyze, "security", "--offline=yes", f"--root={root}",
         f"--threshold={int(MAX_EXPOSURE * 10)}", "--no-pager", PLAIN],
        ANALYZE_TIMEOUT_S, env={"PATH": "/usr/bin:/bin", "SYSTEMD_LOG_COLOR": "0"},
    )
    assert done.returncode != 0, done.stdout


def _with_headers(items: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """`items` with a (section, "", "") entry before each section's first setting."""
    result: list[tuple[str, str, str]] = []
    for section, key, value in items:
        if not result or result[-1][0] != section:
            result.append((section, "", ""))
        result.append((section, key, value))
    return result


# -- the settings the deployment relies on ------------------------------------------------------

EXPECTED_SERVICE = {
    # READY=1 comes from the server once it listens (tests/ops/test_sd_notify.py).
    "Type": ["notify"],
    "NotifyAccess": ["main"],
    "User": ["ecigdis-ws"],
    "Group": ["ecigdis-ws"],
    "EnvironmentFile": ["/etc/ecigdis-ws/env"],
    "WorkingDirectory": ["/var/lib/ecigdis-ws"],
    "StateDirectory": ["ecigdis-ws"],
    "Restart": ["on-failure"],
    "KillSignal": ["SIGTERM"],
    "TimeoutStopSec": ["30"],
    "LimitNOFILE": ["65536"],
    "NoNewPrivileges": ["yes"],
    "ProtectSystem": ["strict"],
    "ProtectHome": ["yes"],
    "PrivateTmp": ["yes"],
    "PrivateDevices": ["yes"],
    "ProtectKernelTunables": ["yes"],
    "ProtectKernelModules": ["yes"],
    "ProtectControlGroups": ["yes"],
    "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
    "LockPersonality": ["yes"],
    "RestrictRealtime": ["yes"],
    "SystemCallArchitectures": ["native"],
    "CapabilityBoundingSet": [""],
    "UMask": ["0027"],
}


def test_plain_unit_runs_serve_as_the_service_user_with_the_env_file() -> None:
    service = settings(shipped(PLAIN), "Service")
    for key, values in EXPECTED_SERVICE.items():
        assert service.get(key) == values, key
    assert service["ExecStart"] == [f"{EXEC_PATH} serve"]
    assert settings(shipped(PLAIN), "Install")["WantedBy"] == ["multi-user.target"]


def test_template_listens_on_its_instance_port_and_names_itself_after_it() -> None:
    service = settings(shipped(TEMPLATE), "Service")
    for key, values in EXPECTED_SERVICE.items():
        assert service.get(key) == values, key
    assert "WS_PORT=%i SERVER_ID=%H:%i" in service["Environment"]
    # --port wins over a WS_PORT in the shared env file, which beats Environment=.
    assert service["ExecStart"] == [f"{EXEC_PATH} serve --port %i"]


def test_template_differs_from_the_plain_unit_only_in_the_port() -> None:
    plain = directives(shipped(PLAIN))
    template = directives(shipped(TEMPLATE))
    instance_only = {
        ("Unit", "Description", "ecigdis-ws chat server (Socket.IO) on port %i"),
        ("Service", "Environment", "WS_PORT=%i SERVER_ID=%H:%i"),
        ("Service", "ExecStart", f"{EXEC_PATH} serve --port %i"),
    }
    plain_only = {
        ("Unit", "Description", "ecigdis-ws chat server (Socket.IO)"),
        ("Service", "ExecStart", f"{EXEC_PATH} serve"),
    }
    assert [d for d in template if d not in instance_only] == [
        d for d in plain if d not in plain_only
    ]
    assert instance_only <= set(template)
    assert plain_only <= set(plain)

