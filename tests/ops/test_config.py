"""`ecigdis-ws config`, run as the console script in a scratch directory (tests/test_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecigdis_ws.ops.config import MASK, display
from ecigdis_ws.settings import SPECS, Spec
from tests.test_cli import run

DB_PASSWORD = "db-pass-4f9a"
REDIS_PASSWORD = "redis-pass-77c1"
API_KEY = "api-key-0b3e"
JWT = "jwt-secret-that-is-long-enough-for-production-9d2c"
CLUSTER = "cluster-secret-51aa"
SERVER_API_KEY = "server-api-key-c0de"


def table(stdout: str) -> dict[str, tuple[str, str]]:
    """{setting: (source, value)} from config's output; comment lines skipped."""
    rows: dict[str, tuple[str, str]] = {}
    for line in stdout.splitlines():
        if line.startswith("#"):
            continue
        name, source, *value = line.split(None, 2)
        assert name not in rows, f"{name} printed twice"
        rows[name] = (source, value[0] if value else "")
    return rows


def test_config_prints_every_setting_with_its_source_and_value(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LOG_LEVEL=warn\nWS_HOST=127.0.0.1\n", encoding="utf-8")
    result = run(tmp_path, "config", PORT="9000", WS_HOST="10.0.0.5")
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert list(rows) == [spec.name for spec in SPECS]
    assert rows["WS_PORT"] == ("environment", "9000")  # through its alias PORT
    assert rows["WS_HOST"] == ("environment", "10.0.0.5")  # the environment beats .env
    assert rows["LOG_LEVEL"] == (".env", "warning")
    assert rows["NODE_ENV"] == ("default", "development")
    assert rows["RATE_LIMIT_EVENTS"] == ("default", "20")
    assert rows["DATABASE_URL"] == ("environment", f"sqlite:///{tmp_path / 'chat.db'}")
    assert rows["MIGRATE_ON_START"] == ("default", "false")
    assert rows["CORS_ORIGINS"] == ("default", "")
    assert f"# ecigdis-ws configuration: environment over .env ({tmp_path / '.env'})" in (
        result.stdout)


def test_config_masks_secrets_and_the_passwords_inside_urls(tmp_path: Path) -> None:
    result = run(
        tmp_path, "config",
        JWT_SECRET=JWT,
        CLUSTER_SECRET=CLUSTER,
        API_KEY=SERVER_API_KEY,
        REDIS_PASSWORD=REDIS_PASSWORD,
        DATABASE_URL=f"mysql://chat:{DB_PASSWORD}@db.internal:3306/chat",
        REDIS_URL=f"redis://:{REDIS_PASSWORD}@redis.internal:6379/0",
        AUTH_VERIFY_URL=f"https://portal.example.com/api/verify?api_key={API_KEY}&v=2",
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for secret in (JWT, CLUSTER, SERVER_API_KEY, REDIS_PASSWORD, DB_PASSWORD, API_KEY):
        assert secret not in output
    rows = table(result.stdout)
    assert rows["JWT_SECRET"] == ("environment", "********")
    assert rows["CLUSTER_SECRET"] == ("environment", "********")
    assert rows["REDIS_PASSWORD"] == ("environment", "********")
    assert rows["API_KEY"] == ("environment", "********")
    assert rows["DATABASE_URL"] == ("environment", "mysql://chat:********@db.internal:3306/chat")
    assert rows["REDIS_URL"] == ("environment", "redis://:********@redis.internal:6379/0")
    assert rows["AUTH_VERIFY_URL"] == (
        "environment", "https://portal.example.com/api/verify?api_key=********&v=2")


def test_config_shows_an_unset_secret_as_empty_not_masked(tmp_path: Path) -> None:
    result = run(tmp_path, "config", JWT_SECRET=None)
    assert result.returncode == 0, result.stderr
    assert table(result.stdout)["JWT_SECRET"] == ("default", "")
    assert "# JWT_SECRET is unset: the development secret signs and checks tokens" in (
        result.stdout)


def test_config_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LOG_LEVEL=chatty\nDB_POOL_MIN=5\nDB_POOL_MAX=2\n",
                                   encoding="utf-8")
    result = run(tmp_path, "config", WS_PORT="abc", NODE_ENV="production",
                 JWT_SECRET="changeme")
    assert result.returncode == 2
    assert result.stdout == ""
    problems = result.stderr.splitlines()
    assert problems[0] == "ecigdis-ws: invalid configuration, 4 problems:"
    assert problems[1:] == [
        "  WS_PORT='abc': expected an integer from 0 to 65535",
        "  LOG_LEVEL='chatty': expected one of debug, info, warning, error",
        "  JWT_SECRET: production needs a secret of at least 32 characters that is not a "
        "known default",
        "  DB_POOL_MIN must not be larger than DB_POOL_MAX",
    ]
    assert "changeme" not in result.stderr


@pytest.mark.parametrize(
    "command", [["serve"], ["migrate"], ["token", "--user", "1", "--name", "A"]]
)
def test_every_command_reports_invalid_settings_as_config_does(
    tmp_path: Path, command: list[str]
) -> None:
    """DEPLOYMENT_GUIDE's troubleshooting shows one form for config and serve alike:
    a first line that counts the problems, then one line each."""
    (tmp_path / ".env").write_text("LOG_LEVEL=chatty\n", encoding="utf-8")
    checked = run(tmp_path, "config", WS_PORT="abc")
    result = run(tmp_path, *command, WS_PORT="abc")
    assert result.returncode == checked.returncode == 2
    assert result.stderr == checked.stderr
    assert result.stderr.splitlines()[0] == "ecigdis-ws: invalid configuration, 2 problems:"


def test_one_problem_is_counted_in_the_singular(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", WS_PORT="abc")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "ecigdis-ws: invalid configuration, 1 problem:",
        "  WS_PORT='abc': expected an integer from 0 to 65535",
    ]


def test_config_reads_the_env_file_given_instead_of_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WS_PORT=1111\n", encoding="utf-8")
    env_file = tmp_path / "etc-env"
    env_file.write_text("WS_PORT=8443\nNODE_ENV=production\n", encoding="utf-8")
    result = run(tmp_path, "config", "--env-file", str(env_file))
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert rows["WS_PORT"] == (".env", "8443")
    assert rows["NODE_ENV"] == (".env", "production")
    assert f"({env_file})" in result.stdout.splitlines()[0]


def test_config_checks_a_broken_env_file_before_a_restart(tmp_path: Path) -> None:
    env_file = tmp_path / "etc-env"
    env_file.write_text("USE_HTTPS=true\nREDIS_URL=http://redis:6379\n", encoding="utf-8")
    result = run(tmp_path, "config", "--env-file", str(env_file))
    assert result.returncode == 2
    assert "REDIS_URL: expected redis://, rediss:// (TLS), redis+sentinel:// or redis+cluster://" \
        in result.stderr
    assert "USE_HTTPS=true needs both CERT_PATH and KEY_PATH" in result.stderr


def test_config_with_a_missing_env_file_exits_2_naming_it(tmp_path: Path) -> None:
    result = run(tmp_path, "config", "--env-file", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert f"no such env file: {tmp_path / 'nope'}" in result.stderr


def test_a_setting_named_like_a_credential_is_masked_even_unflagged() -> None:
    for name in ("PAYMENT_API_KEY", "SMTP_PASSWORD", "WEBHOOK_SECRET", "PORTAL_TOKEN"):
        assert display(Spec(name, "x", str, "", "doc"), "plain-value") == MASK
    assert display(Spec("REDIS_KEY_PREFIX", "x", str, "", "doc"), "ecigdis-ws") == "ecigdis-ws"
    assert display(Spec("KEY_PATH", "x", str, "", "doc"), "/etc/k.pem") == "/etc/k.pem"
