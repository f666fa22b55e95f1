"""The one typed settings object: every setting declared once, as a field, grouped
by topic (settings/declare.py says how a field is declared). Nothing else in the code
reads `os.environ`."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from ecigdis_ws.settings.checks import DEV_JWT_SECRET
from ecigdis_ws.settings.declare import (
    DATABASE,
    LOGGING,
    MS_MAX,
    REDIS,
    TRANSPORT,
    FanoutChannels,
    LogFormat,
    LogLevel,
    Source,
    boolean,
    choice,
    database_url,
    int_range,
    optional_text,
    setting,
    text,
)
from ecigdis_ws.settings.redis_urls import REDIS_URL_FORMS
from ecigdis_ws.settings.serving import LimitSettings

# One frozen dataclass per topic, each adding its own fields to the one before:
# `Settings` is all of them, in this order, with the values derived from several.


@dataclass(frozen=True)
class TransportSettings(LimitSettings):
    """The transport settings: heartbeats, upgrades and HTTP deadlines."""

    ping_interval_ms: int = setting(
        "PING_INTERVAL_MS", int_range(1000, MS_MAX), "25000", TRANSPORT,
        "Engine.IO heartbeat interval (socket.io's default)",
    )
    ping_timeout_ms: int = setting(
        "PING_TIMEOUT_MS", int_range(1000, MS_MAX), "20000", TRANSPORT,
        "a client silent this long after a ping is dropped (socket.io's default)",
    )
    upgrade_timeout_ms: int = setting(
        "UPGRADE_TIMEOUT_MS", int_range(100, MS_MAX), "10000", TRANSPORT,
        "a polling session's websocket upgrade not finished this long after its "
        "request is given up (engine.io's upgradeTimeout); one at a time per session",
    )
    ws_compression: bool = setting(
        "WS_COMPRESSION", boolean, "false", TRANSPORT,
        "permessage-deflate on websocket frames; off as in socket.io since v3: it costs "
        "CPU on every frame and rules out writing one pre-encoded frame to every recipient",
    )
    long_poll_timeout_ms: int = setting(
        "LONG_POLL_TIMEOUT_MS", int_range(0, 120_000), "25000", TRANSPORT,
        "GET /api/messenger/poll is held this long when nothing is new (under "
        "proxies' usual 30 s idle timeout)",
    )
    http_keepalive_timeout_ms: int = setting(
        "HTTP_KEEPALIVE_TIMEOUT_MS", int_range(100, MS_MAX), "10000", TRANSPORT,
        "an HTTP connection without a complete request head this long after it "
        "opened or after its last answer is closed: idle keep-alives and trickled heads",
    )
    http_body_timeout_ms: int = setting(
        "HTTP_BODY_TIMEOUT_MS", int_range(100, MS_MAX), "10000", TRANSPORT,
        "a request body not complete this long after its head is answered 408 and its "
        "connection closed; a body left unread by a refusal is drained at most this long",
    )


@dataclass(frozen=True)
class DatabaseSettings(TransportSettings):
    """The database settings: where everything is stored, and for how long."""

    database_url: str = setting(
        "DATABASE_URL", database_url, "sqlite:///./data/ecigdis-ws.db", DATABASE,
        "sqlite:///path (embedded default) or mysql://user:pass@host:3306/db",
    )
    db_timeout_ms: int = setting(
        "DB_TIMEOUT_MS", int_range(50, MS_MAX), "3000", DATABASE,
        "a database call slower than this answers UNAVAILABLE instead of hanging",
    )
    db_pool_min: int = setting(
        "DB_POOL_MIN", int_range(0, 1000), "1", DATABASE,
        "MariaDB connections kept open even when idle",
    )
    db_pool_max: int = setting(
        "DB_POOL_MAX", int_range(1, 1000), "10", DATABASE,
        "MariaDB connections at most; more requests wait (within DB_TIMEOUT_MS)",
    )
    db_connect_timeout_ms: int = setting(
        "DB_CONNECT_TIMEOUT_MS", int_range(100, MS_MAX), "3000", DATABASE,
        "give up opening a MariaDB connection after this long",
    )
    db_pool_recycle_s: int = setting(
        "DB_POOL_RECYCLE_S", int_range(-1, 86400 * 7), "3600", DATABASE,
        "reopen MariaDB connections older than this, before wait_timeout kills them (-1: never)",
    )
    db_table_prefix: str = setting(
        "DB_TABLE_PREFIX", text, "chat_", DATABASE,
        "prefix of every table, to share a database with the main site",
    )
    migrate_on_start: bool = setting(
        "MIGRATE_ON_START", boolean, "false", DATABASE,
        "let `serve` apply pending migrations before accepting connections",
    )
    event_log_retention_s: int = setting(
        "EVENT_LOG_RETENTION_S", int_range(1, 10 * 365 * 86400), "86400", DATABASE,
        "events the long-poll reads are kept this long (a day: a tab asleep "
        "overnight resumes without a resync); an older cursor is answered resync: true "
        "and the client catches up from history; DB_TIMEOUT_MS + 5 s is always kept",
    )
    message_retention_days: int = setting(
        "MESSAGE_RETENTION_DAYS", int_range(0, 100 * 365), "0", DATABASE,
        "messages older than this many days are deleted with their reactions, in small "
        "batches; 0 keeps them forever",
    )


@dataclass(frozen=True)
class RedisSettings(DatabaseSettings):
    """The redis settings: several nodes over Redis."""

    redis_url: str | None = setting(
        "REDIS_URL", optional_text, "", REDIS,
        f"{REDIS_URL_FORMS}; set to run several nodes",
    )
    redis_host: str | None = setting(
        "REDIS_HOST", optional_text, "", REDIS,
        "Redis host when REDIS_URL is not set (the Node server's name)",
    )
    redis_port: int = setting(
        "REDIS_PORT", int_range(1, 65535), "6379", REDIS,
        "Redis port with REDIS_HOST (the Node server's name)",
    )
    redis_password: str | None = setting(
        "REDIS_PASSWORD", optional_text, "", REDIS,
        "Redis password with REDIS_HOST",
        secret=True,
    )
    redis_db: int = setting(
        "REDIS_DB", int_range(0, 1024), "0", REDIS,
        "Redis database number with REDIS_HOST",
    )
    redis_key_prefix: str = setting(
        "REDIS_KEY_PREFIX", text, "ecigdis-ws", REDIS,
        "prefix of this cluster's Redis keys and fan-out channel",
    )
    redis_timeout_ms: int = setting(
        "REDIS_TIMEOUT_MS", int_range(50, MS_MAX), "1000", REDIS,
        "a Redis command slower than this counts as Redis being down",
    )
    fanout_channels: FanoutChannels = setting(
        "FANOUT_CHANNELS", choice("per-room", "single"), "per-room", REDIS,
        "per-room: a node hears only its rooms' traffic; single: one channel every node "
        "reads (the previous version's; every node of a cluster must use the same)",
    )
    fanout_unsubscribe_delay_ms: int = setting(
        "FANOUT_UNSUBSCRIBE_DELAY_MS", int_range(0, MS_MAX), "10000", REDIS,
        "a room's channel stays subscribed this long after its last socket here left, "
        "so churn does not thrash Redis",
    )
    cluster_secret: str | None = setting(
        "CLUSTER_SECRET", optional_text, "", REDIS,
        "signs fan-out messages between nodes; default derived from JWT_SECRET",
        secret=True,
    )


@dataclass(frozen=True)
class LoggingSettings(RedisSettings):
    """The logging settings: what the log says and how."""

    log_level: LogLevel = setting(
        "LOG_LEVEL", choice("debug", "info", "warning", "error", aliases={"warn": "warning"}),
        "info", LOGGING,
        "debug, info, warn (or warning) or error",
    )
    log_format: LogFormat = setting(
        "LOG_FORMAT", choice("auto", "console", "json"), "auto", LOGGING,
        "auto: console in development, JSON lines in production",
    )


@dataclass(frozen=True)
class Settings(LoggingSettings):
    # Where each value came from (default, .env or the environment), by attribute.
    sources: Mapping[str, Source] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def serves_demo_page(self) -> bool:
        """DEMO_PAGE, where `auto` means on in development only."""
        if self.demo_page is None:
            return self.environment == "development"
        return self.demo_page

    @property
    def listen_host(self) -> str:
        """WS_HOST; auto keeps a development server, whose /dev/token lets anyone be
        anyone, on loopback (as Django's runserver or Vite do) and listens on every
        interface otherwise (the Node server's default)."""
        if self.host is not None:
            return self.host
        return "127.0.0.1" if self.environment == "development" else "0.0.0.0"

    @property
    def effective_server_id(self) -> str:
        return self.server_id or f"{socket.gethostname()}:{self.port}"

    @property
    def effective_jwt_secret(self) -> str:
        """The signing secret; outside production a fixed development secret stands in."""
        return self.jwt_secret or DEV_JWT_SECRET

    @property
    def uses_dev_secret(self) -> bool:
        return not self.jwt_secret

    @property
    def effective_redis_url(self) -> str | None:
        """REDIS_URL, else one built from the Node server's REDIS_HOST/REDIS_PORT."""
        if self.redis_url:
            return self.redis_url
        if not self.redis_host:
            return None
        auth = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    @property
    def effective_cluster_secret(self) -> bytes:
        """The key nodes sign fan-out messages with; every node derives the same one."""
        secret = self.cluster_secret or f"ecigdis-ws-cluster:{self.effective_jwt_secret}"
        return hashlib.sha256(secret.encode()).digest()

    @property
    def json_logs(self) -> bool:
        if self.log_format == "auto":
            return self.is_production
        return self.log_format == "json"
