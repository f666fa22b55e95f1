"""Settings: defaults, precedence, aliases, validation and the derived .env.example."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from ecigdis_ws.settings import (
    DEV_JWT_SECRET,
    SPECS,
    ClusterAddress,
    Settings,
    SettingsError,
    Source,
    load_settings,
    parse_cluster_url,
    render_env_example,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
STRONG_SECRET = "a-production-secret-of-forty-two-characters"


def load(dotenv: Path | None = None, **env: str) -> Settings:
    return load_settings(env, dotenv_path=dotenv)


def problems_in(env: Mapping[str, str], dotenv: Path | None = None) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        load_settings(env, dotenv_path=dotenv)
    return caught.value


def problems_of(dotenv: Path | None = None, **env: str) -> SettingsError:
    return problems_in(env, dotenv)


def write_dotenv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults ------------------------------------------------------------------------


def test_defaults_match_the_node_server() -> None:
    settings = load()
    assert settings.environment == "development"
    assert settings.host is None and settings.listen_host == "127.0.0.1"  # development
    assert settings.port == 8080
    assert settings.database_url == "sqlite:///./data/ecigdis-ws.db"
    assert settings.log_level == "info"
    assert settings.user_id_type == "int"
    assert settings.conversation_access == "members"
    assert settings.jwt_algorithms == ("HS256",)
    assert settings.jwt_leeway_s == 30
    assert settings.jwt_require_exp is True
    assert (settings.auth_timeout_ms, settings.typing_timeout_ms) == (10000, 6000)
    assert (settings.presence_grace_ms, settings.presence_ttl_ms) == (2000, 30000)
    assert (settings.max_message_length, settings.max_payload_bytes) == (4000, 65536)
    assert (settings.rate_limit_events, settings.rate_limit_messages) == (20, 5)
    assert settings.migrate_on_start is False
    assert settings.cors_origins == ()


def test_every_value_comes_from_the_default_source_when_nothing_is_set() -> None:
    settings = load()
    assert set(settings.sources.values()) == {Source.DEFAULT}
    assert len(settings.sources) == len(SPECS)


def test_missing_dotenv_file_is_ignored(tmp_path: Path) -> None:
    assert load(tmp_path / "absent.env") == Settings()


# -- precedence and aliases ----------------------------------------------------------


def test_dotenv_beats_default(tmp_path: Path) -> None:
    settings = load(write_dotenv(tmp_path, "WS_PORT=9001\nLOG_LEVEL=debug\n"))
    assert settings.port == 9001
    assert settings.log_level == "debug"
    assert settings.sources["port"] is Source.DOTENV


def test_environment_beats_dotenv(tmp_path: Path) -> None:
    dotenv = write_dotenv(tmp_path, "WS_PORT=9001\nLOG_LEVEL=debug\n")
    settings = load(dotenv, WS_PORT="9002")
    assert settings.port == 9002
    assert settings.sources["port"] is Source.ENVIRONMENT
    assert settings.log_level == "debug"
    assert settings.sources["log_level"] is Source.DOTENV


def test_port_is_an_alias_of_ws_port() -> None:
    assert load(PORT="9100").port == 9100


def test_ws_port_wins_over_port_in_the_same_source() -> None:
    assert load(WS_PORT="9200", PORT="9100").port == 9200


def test_port_in_environment_beats_ws_port_in_dotenv(tmp_path: Path) -> None:
    assert load(write_dotenv(tmp_path, "WS_PORT=9001\n"), PORT="9100").port == 9100


@pytest.mark.parametrize("raw", ["warn", "WARN", "warning"])
def test_log_level_warn_means_warning(raw: str) -> None:
    assert load(LOG_LEVEL=raw).log_level == "warning"


def test_cors_origins_is_a_trimmed_comma_separated_list() -> None:
    settings = load(CORS_ORIGINS=" https://a.example , https://b.example,, ")
    assert settings.cors_origins == ("https://a.example", "https://b.example")


def test_json_logs_follow_environment_unless_log_format_is_set() -> None:
    assert load().json_logs is False
    assert load(NODE_ENV="production", JWT_SECRET=STRONG_SECRET).json_logs is True
    assert load(LOG_FORMAT="json").json_logs is True
    assert load(NODE_ENV="production", JWT_SECRET=STRONG_SECRET, LOG_FORMAT="console").json_logs \
        is False


# -- invalid values ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "accepted"),
    [
        ("WS_PORT", "abc", "0 to 65535"),
        ("WS_PORT", "70000", "0 to 65535"),
        ("LOG_LEVEL", "loud", "debug, info, warning, error"),
        ("NODE_ENV", "staging", "development, production, test"),
        ("USER_ID_TYPE", "uuid", "int, string"),
        ("CONVERSATION_ACCESS", "public", "members, open"),
        ("USE_HTTPS", "maybe", "true or false"),
        ("DATABASE_URL", "postgres://db/chat", "sqlite:///path"),
        ("JWT_ALGORITHMS", "none", "HS256"),
        ("DB_TIMEOUT_MS", "10", "50 to"),
    ],
)
def test_invalid_value_names_the_variable_and_the_accepted_values(
    name: str, raw: str, accepted: str
) -> None:
    error = problems_in({name: raw})
    [problem] = error.problems
    assert problem.startswith(f"{name}=")
    assert raw in problem
    assert accepted in problem
    assert problem in str(error)


def test_every_invalid_variable_is_listed_at_once() -> None:
    error = problems_of(WS_PORT="abc", LOG_LEVEL="loud", USER_ID_TYPE="uuid")
    named = sorted(problem.split("=")[0] for problem in error.problems)
    assert named == ["LOG_LEVEL", "USER_ID_TYPE", "WS_PORT"]
    for name in named:
        assert name in str(error)


def test_invalid_values_and_cross_check_problems_are_listed_together() -> None:
    error = problems_of(WS_PORT="abc", NODE_ENV="production", USE_HTTPS="true")
    message = str(error)
    assert "WS_PORT" in message
    assert "JWT_SECRET" in message
    assert "CERT_PATH" in message
    assert len(error.problems) == 3


def test_an_invalid_value_from_dotenv_is_reported_too(tmp_path: Path) -> None:
    error = problems_of(write_dotenv(tmp_path, "LOG_LEVEL=chatty\n"))
    assert any(problem.startswith("LOG_LEVEL='chatty'") for problem in error.problems)


# -- JWT secret and HTTPS ------------------------------------------------------------


def test_production_without_jwt_secret_is_an_error() -> None:
    error = problems_of(NODE_ENV="production")
    assert any("JWT_SECRET" in problem for problem in error.problems)


def test_production_with_a_short_jwt_secret_is_an_error_that_hides_it() -> None:
    short = "s3cr3t-but-only-25-chars!"
    error = problems_of(NODE_ENV="production", JWT_SECRET=short)
    assert any("JWT_SECRET" in problem and "32" in problem for problem in error.problems)
    assert short not in str(error)


def test_production_with_the_development_secret_is_an_error() -> None:
    error = problems_of(NODE_ENV="production", JWT_SECRET=DEV_JWT_SECRET)
    assert any("JWT_SECRET" in problem for problem in error.problems)


def test_production_with_a_strong_secret_loads() -> None:
    settings = load(NODE_ENV="production", JWT_SECRET=STRONG_SECRET)
    assert settings.is_production
    assert settings.effective_jwt_secret == STRONG_SECRET
    assert settings.uses_dev_secret is False


def test_development_without_jwt_secret_uses_the_dev_secret() -> None:
    settings = load(NODE_ENV="development")
    assert settings.uses_dev_secret is True
    assert settings.effective_jwt_secret == DEV_JWT_SECRET


def test_development_with_jwt_secret_uses_it() -> None:
    settings = load(JWT_SECRET="short-is-fine-here")
    assert settings.uses_dev_secret is False
    assert settings.effective_jwt_secret == "short-is-fine-here"


@pytest.mark.parametrize(
    "paths",
    [{}, {"CERT_PATH": "/etc/cert.pem"}, {"KEY_PATH": "/etc/key.pem"}],
    ids=["neither", "cert-only", "key-only"],
)
def test_use_https_without_cert_and_key_paths_is_an_error(paths: dict[str, str]) -> None:
    error = problems_in({"USE_HTTPS": "true", **paths})
    assert any(
        "USE_HTTPS" in problem and "CERT_PATH" in problem and "KEY_PATH" in problem
        for problem in error.problems
    )


def test_use_https_with_cert_and_key_paths_loads() -> None:
    settings = load(USE_HTTPS="true", CERT_PATH="/etc/cert.pem", KEY_PATH="/etc/key.pem")
    assert settings.use_https
    assert (settings.cert_path, settings.key_path) == ("/etc/cert.pem", "/etc/key.pem")


# -- .env.example --------------------------------------------------------------------


def test_env_example_in_the_repo_equals_the_rendered_specs() -> None:
    on_disk = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
    assert on_disk == render_env_example(), "run `make env-example` to regenerate it"


def test_env_example_names_every_setting_with_its_default() -> None:
    rendered = render_env_example().splitlines()
    for spec in SPECS:
        assert f"{spec.name}={spec.default}" in rendered


def test_env_example_copied_to_dotenv_loads_the_defaults(tmp_path: Path) -> None:
    assert load(write_dotenv(tmp_path, render_env_example())) == Settings()


def test_redis_host_and_port_build_the_redis_url() -> None:
    settings = load_settings(
        {"REDIS_HOST": "cache.internal", "REDIS_PORT": "6380", "REDIS_PASSWORD": "p@ss",
         "REDIS_DB": "2"},
        dotenv_path=None,
    )
    assert settings.effective_redis_url == "redis://:p%40ss@cache.internal:6380/2"


def test_redis_url_wins_over_redis_host() -> None:
    settings = load_settings(
        {"REDIS_URL": "rediss://cache:6379/0", "REDIS_HOST": "other"}, dotenv_path=None
    )
    assert settings.effective_redis_url == "rediss://cache:6379/0"


def test_no_redis_means_a_single_node() -> None:
    assert load_settings({}, dotenv_path=None).effective_redis_url is None


def test_redis_url_with_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(SettingsError, match="REDIS_URL"):
        load_settings({"REDIS_URL": "http://cache:6379"}, dotenv_path=None)


def test_a_redis_cluster_url_lists_its_nodes_and_credentials() -> None:
    url = "rediss+cluster://chat:p%40ss@10.0.0.5:7000,10.0.0.6,[::1]:7002"
    assert load(REDIS_URL=url).effective_redis_url == url
    assert parse_cluster_url(url) == ClusterAddress(
        (("10.0.0.5", 7000), ("10.0.0.6", 6379), ("::1", 7002)), "chat", "p@ss", tls=True)
    assert parse_cluster_url("redis+cluster://h:1/0").tls is False


def test_a_tls_cluster_url_names_the_ca_and_client_certificate() -> None:
    url = ("rediss+cluster://h:7000?ssl_ca_certs=/etc/redis/ca%20file.pem"
           "&ssl_certfile=/etc/c.pem&ssl_keyfile=/etc/k.pem")
    assert parse_cluster_url(url).tls_files == {
        "ssl_ca_certs": "/etc/redis/ca file.pem", "ssl_certfile": "/etc/c.pem",
        "ssl_keyfile": "/etc/k.pem"}
    assert parse_cluster_url("rediss+cluster://h:7000").tls_files == {}


@pytest.mark.parametrize(("url", "problem"), [
    ("redis+cluster://h:7000/2", "a Redis Cluster has only database 0"),
    ("redis+cluster://h:7000,h:port", "not a host:port: 'h:port'"),
    ("redis+cluster://", "not a host:port: ''"),
    ("rediss+cluster://h:7000?db=1",
     "a Redis Cluster URL takes only ssl_ca_certs, ssl_certfile, ssl_keyfile (not db)"),
    ("redis+cluster://h:7000?ssl_ca_certs=/ca.pem", "ssl_* options need rediss+cluster://"),
    ("rediss+cluster://h:7000?ssl_ca_certs=", "each ssl_* option once, with a file's path"),
])
def test_a_redis_cluster_url_that_cannot_work_is_refused_saying_why(
    url: str, problem: str
) -> None:
    assert f"REDIS_URL: {problem}" in str(problems_of(REDIS_URL=url))


def test_a_key_prefix_with_a_brace_is_refused_with_a_redis_cluster_only() -> None:
    prefix = "chat{1}"
    assert load(REDIS_URL="redis://h:6379/0", REDIS_KEY_PREFIX=prefix).redis_key_prefix == prefix
    error = problems_of(REDIS_URL="redis+cluster://h:7000", REDIS_KEY_PREFIX=prefix)
    assert "REDIS_KEY_PREFIX: no { or } with a Redis Cluster" in str(error)


def test_main_site_url_and_auth_verify_url_are_read() -> None:
    settings = load_settings(
        {"MAIN_SITE_URL": "https://portal.example",
         "AUTH_VERIFY_URL": "https://portal.example/api/messenger/verify-token"},
        dotenv_path=None,
    )
    assert settings.main_site_url == "https://portal.example"
    assert settings.auth_verify_url == "https://portal.example/api/messenger/verify-token"


def test_retention_settings_refuse_what_they_cannot_mean() -> None:
    error = problems_of(EVENT_LOG_RETENTION_S="0", MESSAGE_RETENTION_DAYS="-1")
    named = sorted(problem.split("=")[0] for problem in error.problems)
    assert named == ["EVENT_LOG_RETENTION_S", "MESSAGE_RETENTION_DAYS"]
    settings = load_settings({"EVENT_LOG_RETENTION_S": "3600", "MESSAGE_RETENTION_DAYS": "30"},
                             dotenv_path=None)
    assert (settings.event_log_retention_s, settings.message_retention_days) == (3600, 30)
