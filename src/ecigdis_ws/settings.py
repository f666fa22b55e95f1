"""The one typed settings object, read once at start from the environment and `.env`.

Every variable is declared once in `SPECS` with its parser, default and a one-line
reason; `.env.example` and `ecigdis-ws config` are derived from the same table, so
the three never drift apart. Nothing else in the code reads `os.environ`.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlparse

from dotenv import dotenv_values

Environment = Literal["development", "production", "test"]
UserIdType = Literal["int", "string"]
ConversationAccess = Literal["members", "open"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "console", "json"]
PresenceScope = Literal["global", "contacts"]
FanoutChannels = Literal["per-room", "single"]
MemberAddPolicy = Literal["anyone", "contacts", "server_api"]
EventLoop = Literal["uvloop", "asyncio"]

DEV_JWT_SECRET = "ecigdis-ws-development-secret-not-for-production"
# A production secret must be long enough that brute force on HS256 is hopeless.
MIN_PRODUCTION_SECRET_LENGTH = 32
WEAK_SECRETS = frozenset(
    {DEV_JWT_SECRET, "secret", "changeme", "change-me", "your-secret-key", "jwt_secret"}
)


class SettingsError(ValueError):
    """Raised with every problem found, each naming its variable."""

    def __init__(self, problems: list[str]) -> None:
        # Counted, so `serve` and `config` print the same first line for one file.
        count = f"{len(problems)} problem{'s' * (len(problems) != 1)}"
        super().__init__(f"invalid configuration, {count}:\n  " + "\n  ".join(problems))
        self.problems = problems


class Source(StrEnum):
    DEFAULT = "default"
    DOTENV = ".env"
    ENVIRONMENT = "environment"


Parser = Callable[[str], Any]


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false")


def _auto_bool(raw: str) -> bool | None:
    """auto (None: decided from other settings), or true/false."""
    if raw.strip().lower() == "auto":
        return None
    try:
        return _bool(raw)
    except ValueError:
        raise ValueError("expected auto, true or false") from None


def _int_range(low: int, high: int) -> Parser:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return value

    return parse


def _choice(*choices: str, aliases: Mapping[str, str] | None = None) -> Parser:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        value = (aliases or {}).get(value, value)
        if value not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return value

    return parse


def _text(raw: str) -> str:
    return raw.strip()


def _optional_text(raw: str) -> str | None:
    return raw.strip() or None


def _host(raw: str) -> str | None:
    """An address to listen on, or auto (None: decided by NODE_ENV)."""
    value = raw.strip()
    return None if value.lower() in ("", "auto") else value


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _algorithms(raw: str) -> tuple[str, ...]:
    allowed = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}
    values = tuple(item.strip().upper() for item in raw.split(",") if item.strip())
    if not values or any(value not in allowed for value in values):
        raise ValueError("expected a comma-separated list of " + ", ".join(sorted(allowed)))
    return values


def _database_url(raw: str) -> str:
    value = raw.strip()
    if not value.startswith(("sqlite://", "mysql://", "mariadb://")):
        raise ValueError("expected sqlite:///path or mysql://user:pass@host:3306/db")
    return value


@dataclass(frozen=True)
class Spec:
    name: str
    attr: str
    parse: Parser
    default: str
    doc: str
    aliases: tuple[str, ...] = ()
    secret: bool = False


_MS_MAX = 24 * 3600 * 1000

# The forms of REDIS_URL, as the setting's help and its error message list them.
REDIS_URL_FORMS = ("redis://, rediss:// (TLS), redis+sentinel:// or "
                   "redis+cluster://host:port[,host:port...] (rediss+cluster:// with TLS)")
DEFAULT_CLUSTER_PORT = 6379  # a cluster node given without a port (Redis's own default)

SPECS: tuple[Spec, ...] = (
    Spec("NODE_ENV", "environment", _choice("development", "production", "test"),
         "development", "development, production or test; production turns on the strict checks"),
    Spec("WS_HOST", "host", _host, "auto",
         "address to listen on (the Node server's name); auto: 127.0.0.1 in development, "
         "where POST /dev/token signs anyone in as anyone, else 0.0.0.0"),
    Spec("WS_PORT", "port", _int_range(0, 65535), "8080",
         "port for Socket.IO and HTTP (the Node server's name)", aliases=("PORT",)),
    Spec("SERVER_ID", "server_id", _optional_text, "",
         "this node's id in `connected` and /status; default host name plus port"),
    Spec("USE_HTTPS", "use_https", _bool, "false", "serve https/wss on the same port"),
    Spec("CERT_PATH", "cert_path", _optional_text, "", "PEM certificate chain when USE_HTTPS=true"),
    Spec("KEY_PATH", "key_path", _optional_text, "", "PEM private key when USE_HTTPS=true"),
    Spec("MAIN_SITE_URL", "main_site_url", _optional_text, "",
         "the portal's base URL (kept for the Node server's env files)"),
    Spec("AUTH_VERIFY_URL", "auth_verify_url", _optional_text, "",
         "main-site endpoint for tokens the JWT check cannot decide, e.g. "
         "${MAIN_SITE_URL}/api/messenger/verify-token"),
    Spec("AUTH_VERIFY_TIMEOUT_MS", "auth_verify_timeout_ms", _int_range(50, 60_000), "2000",
         "give up on the main site after this long and refuse the token"),
    Spec("AUTH_VERIFY_CACHE_S", "auth_verify_cache_s", _int_range(0, 86400), "60",
         "how long a main-site answer is reused for the same token"),
    Spec("CORS_ORIGINS", "cors_origins", _csv, "",
         "comma-separated exact Origin allowlist; empty allows every origin in development"),
    Spec("DEMO_PAGE", "demo_page", _auto_bool, "auto",
         "serve the demo chat page at /; auto: only when NODE_ENV=development"),
    Spec("JWT_SECRET", "jwt_secret", _optional_text, "",
         "HS* signing secret; required and 32+ characters in production", secret=True),
    Spec("JWT_ALGORITHMS", "jwt_algorithms", _algorithms, "HS256",
         "accepted JWT algorithms; `none` is never accepted"),
    Spec("JWT_PUBLIC_KEY_PATH", "jwt_public_key_path", _optional_text, "",
         "PEM public key for RS*/ES* algorithms"),
    Spec("JWT_ISSUER", "jwt_issuer", _optional_text, "", "required `iss` claim, when set"),
    Spec("JWT_AUDIENCE", "jwt_audience", _optional_text, "", "required `aud` claim, when set"),
    Spec("JWT_LEEWAY_S", "jwt_leeway_s", _int_range(0, 3600), "30",
         "clock skew tolerated on exp/nbf between the portal and this machine"),
    Spec("JWT_REQUIRE_EXP", "jwt_require_exp", _bool, "true",
         "refuse tokens without `exp` so a leaked token cannot live forever"),
    Spec("JWT_MAX_TTL_S", "jwt_max_ttl_s", _int_range(0, 10 * 365 * 86400), "2592000",
         "refuse tokens whose `exp` lies further ahead than this (an `exp` of 1e30 is a "
         "token that never expires); 0 turns it off; tokens without `exp` are untouched"),
    Spec("USER_ID_TYPE", "user_id_type", _choice("int", "string"), "int",
         "int: user ids are integers; string: 1-64 character strings"),
    Spec("CONVERSATION_ACCESS", "conversation_access", _choice("members", "open"), "members",
         "members: only listed members may use a conversation; open: anyone, joining on use"),
    Spec("AUTH_TIMEOUT_MS", "auth_timeout_ms", _int_range(100, _MS_MAX), "10000",
         "a connection not authenticated this long after its handshake is closed (and a "
         "socket whose token expired, this long after)"),
    Spec("TYPING_TIMEOUT_MS", "typing_timeout_ms", _int_range(100, _MS_MAX), "6000",
         "typing ends by itself after this long without a new typing:start"),
    Spec("PRESENCE_GRACE_MS", "presence_grace_ms", _int_range(0, _MS_MAX), "2000",
         "delay before user:offline so a page reload does not flap"),
    Spec("PRESENCE_TTL_MS", "presence_ttl_ms", _int_range(1000, _MS_MAX), "30000",
         "a node that stops refreshing presence this long has its users reported offline"),
    Spec("DB_TIMEOUT_MS", "db_timeout_ms", _int_range(50, _MS_MAX), "3000",
         "a database call slower than this answers UNAVAILABLE instead of hanging"),
    Spec("SHUTDOWN_TIMEOUT_MS", "shutdown_timeout_ms", _int_range(0, _MS_MAX), "10000",
         "on SIGTERM, how long running events may take before sockets are closed"),
    Spec("MAX_MESSAGE_LENGTH", "max_message_length", _int_range(1, 1_000_000), "4000",
         "characters of text per message"),
    Spec("MAX_PAYLOAD_BYTES", "max_payload_bytes", _int_range(1024, 100_000_000), "65536",
         "bytes per Socket.IO packet; larger packets close the connection"),
    Spec("RATE_LIMIT_EVENTS", "rate_limit_events", _int_range(0, 1_000_000), "20",
         "events per second per socket (bursts of twice that); 0 turns it off"),
    Spec("RATE_LIMIT_MESSAGES", "rate_limit_messages", _int_range(0, 1_000_000), "5",
         "message:send per second per user (bursts of twice that); 0 turns it off"),
    Spec("RATE_LIMIT_CONVERSATIONS", "rate_limit_conversations", _int_range(0, 1_000_000),
         "10", "conversations one user may create per minute over REST (bursts of twice "
         "that; the server API is not limited); each create holds the database writer, "
         "0 turns it off"),
    Spec("MAX_CONVERSATION_MEMBERS", "max_conversation_members", _int_range(2, 1_000_000),
         "1000", "members of one conversation, its creator included; a create or add past "
         "it is refused before anything is written (the benchmark's broadcast group is 1000)"),
    Spec("MEMBER_ADD_POLICY", "member_add_policy",
         _choice("anyone", "contacts", "server_api"), "anyone",
         "whom a user may put into a conversation they create: anyone (as the Node "
         "server), contacts (users they already share a conversation with) or "
         "server_api (only themselves; only the main site adds others)"),
    Spec("LONG_POLL_TIMEOUT_MS", "long_poll_timeout_ms", _int_range(0, 120_000), "25000",
         "GET /api/messenger/poll is held this long when nothing is new (under "
         "proxies' usual 30 s idle timeout)"),
    Spec("HTTP_KEEPALIVE_TIMEOUT_MS", "http_keepalive_timeout_ms", _int_range(100, _MS_MAX),
         "10000", "an HTTP connection without a complete request head this long after it "
         "opened or after its last answer is closed: idle keep-alives and trickled heads"),
    Spec("HTTP_BODY_TIMEOUT_MS", "http_body_timeout_ms", _int_range(100, _MS_MAX), "10000",
         "a request body not complete this long after its head is answered 408 and its "
         "connection closed; a body left unread by a refusal is drained at most this long"),
    Spec("MAX_POLLS_PER_USER", "max_polls_per_user", _int_range(0, 100_000), "20",
         "GET /api/messenger/poll requests one user may have held at once on a node (one "
         "per tab in HTTP fallback); past it 429 RATE_LIMITED; 0 turns it off"),
    Spec("EVENT_LOG_RETENTION_S", "event_log_retention_s", _int_range(1, 10 * 365 * 86400),
         "86400", "events the long-poll reads are kept this long (a day: a tab asleep "
         "overnight resumes without a resync); an older cursor is answered resync: true "
         "and the client catches up from history; DB_TIMEOUT_MS + 5 s is always kept"),
    Spec("MESSAGE_RETENTION_DAYS", "message_retention_days", _int_range(0, 100 * 365), "0",
         "messages older than this many days are deleted with their reactions, in small "
         "batches; 0 keeps them forever"),
    Spec("API_KEY", "api_key", _optional_text, "",
         "key the main site sends as X-API-Key to /api/server/*; empty turns those routes "
         "off (404)", secret=True),
    Spec("MAX_CONNECTIONS_PER_USER", "max_connections_per_user", _int_range(0, 100_000), "20",
         "sockets one user may hold on a node (tabs and devices); 0 turns it off"),
    Spec("MAX_UNAUTHENTICATED_PER_IP", "max_unauthenticated_per_ip", _int_range(0, 1_000_000),
         "50", "connections from one address between their handshake and authentication; "
         "past it a handshake is answered 429; 0 turns it off"),
    Spec("MAX_ROOMS_PER_SOCKET", "max_rooms_per_socket", _int_range(0, 1_000_000), "500",
         "conversations one socket may be joined to at once (each room costs memory and "
         "every disconnect walks all rooms); past it conversation:join is RATE_LIMITED; "
         "0 turns it off"),
    Spec("PRESENCE_LIST_MAX", "presence_list_max", _int_range(1, 1_000_000), "200",
         "users in one presence:request answer, which says truncated: true when more "
         "are online (a small request must not buy the whole online list)"),
    Spec("REPLAY_MAX_MESSAGES", "replay_max_messages", _int_range(1, 1_000_000), "1000",
         "messages one conversation:join with since replays at most; past it the answer "
         "says resync: true and the client pages the rest from history"),
    Spec("TRUST_PROXY", "trust_proxy", _bool, "false",
         "take the client address from X-Forwarded-For (only behind your own proxy)"),
    Spec("PING_INTERVAL_MS", "ping_interval_ms", _int_range(1000, _MS_MAX), "25000",
         "Engine.IO heartbeat interval (socket.io's default)"),
    Spec("PING_TIMEOUT_MS", "ping_timeout_ms", _int_range(1000, _MS_MAX), "20000",
         "a client silent this long after a ping is dropped (socket.io's default)"),
    Spec("WS_COMPRESSION", "ws_compression", _bool, "false",
         "permessage-deflate on websocket frames; off as in socket.io since v3: it costs "
         "CPU on every frame and rules out writing one pre-encoded frame to every recipient"),
    Spec("WS_MAX_BUFFERED_BYTES", "ws_max_buffered_bytes", _int_range(65536, 1_000_000_000),
         "8388608", "a client (websocket or polling) this far behind on reading is "
         "disconnected as too slow (as Centrifugo does), so it cannot grow the server's "
         "memory; generous, as the Node server never cut a slow client"),
    Spec("MAX_BUFFERED_PACKETS", "max_buffered_packets", _int_range(16, 10_000_000), "5000",
         "a polling client with this many packets waiting for it is disconnected as too "
         "slow: each waiting packet is an object of its own, whatever its size"),
    Spec("UPGRADE_TIMEOUT_MS", "upgrade_timeout_ms", _int_range(100, _MS_MAX), "10000",
         "a polling session's websocket upgrade not finished this long after its "
         "request is given up (engine.io's upgradeTimeout); one at a time per session"),
    Spec("EVENT_LOOP", "event_loop", _choice("uvloop", "asyncio"), "uvloop",
         "uvloop (libuv: faster I/O and timers) or asyncio's own loop"),
    Spec("PRESENCE_SCOPE", "presence_scope", _choice("global", "contacts"), "global",
         "who hears user:online/offline and whom presence:request lists: everyone, or only "
         "users who share a conversation (contacts: no quadratic broadcast in a connect storm)"),
    Spec("MEMBERSHIP_CACHE_S", "membership_cache_s", _int_range(0, 86400), "60",
         "how long a positive membership check is trusted without asking the database; "
         "changes made through this server invalidate it at once, 0 turns the cache off"),
    Spec("DATABASE_URL", "database_url", _database_url, "sqlite:///./data/ecigdis-ws.db",
         "sqlite:///path (embedded default) or mysql://user:pass@host:3306/db"),
    Spec("DB_POOL_MIN", "db_pool_min", _int_range(0, 1000), "1",
         "MariaDB connections kept open even when idle"),
    Spec("DB_POOL_MAX", "db_pool_max", _int_range(1, 1000), "10",
         "MariaDB connections at most; more requests wait (within DB_TIMEOUT_MS)"),
    Spec("DB_CONNECT_TIMEOUT_MS", "db_connect_timeout_ms", _int_range(100, _MS_MAX), "3000",
         "give up opening a MariaDB connection after this long"),
    Spec("DB_POOL_RECYCLE_S", "db_pool_recycle_s", _int_range(-1, 86400 * 7), "3600",
         "reopen MariaDB connections older than this, before wait_timeout kills them (-1: never)"),
    Spec("DB_TABLE_PREFIX", "db_table_prefix", _text, "chat_",
         "prefix of every table, to share a database with the main site"),
    Spec("MIGRATE_ON_START", "migrate_on_start", _bool, "false",
         "let `serve` apply pending migrations before accepting connections"),
    Spec("REDIS_URL", "redis_url", _optional_text, "",
         f"{REDIS_URL_FORMS}; set to run several nodes"),
    Spec("REDIS_HOST", "redis_host", _optional_text, "",
         "Redis host when REDIS_URL is not set (the Node server's name)"),
    Spec("REDIS_PORT", "redis_port", _int_range(1, 65535), "6379",
         "Redis port with REDIS_HOST (the Node server's name)"),
    Spec("REDIS_PASSWORD", "redis_password", _optional_text, "",
         "Redis password with REDIS_HOST", secret=True),
    Spec("REDIS_DB", "redis_db", _int_range(0, 1024), "0", "Redis database number with REDIS_HOST"),
    Spec("REDIS_KEY_PREFIX", "redis_key_prefix", _text, "ecigdis-ws",
         "prefix of this cluster's Redis keys and fan-out channel"),
    Spec("REDIS_TIMEOUT_MS", "redis_timeout_ms", _int_range(50, _MS_MAX), "1000",
         "a Redis command slower than this counts as Redis being down"),
    Spec("FANOUT_CHANNELS", "fanout_channels", _choice("per-room", "single"), "per-room",
         "per-room: a node hears only its rooms' traffic; single: one channel every node "
         "reads (the previous version's; every node of a cluster must use the same)"),
    Spec("FANOUT_UNSUBSCRIBE_DELAY_MS", "fanout_unsubscribe_delay_ms", _int_range(0, _MS_MAX),
         "10000",
         "a room's channel stays subscribed this long after its last socket here left, "
         "so churn does not thrash Redis"),
    Spec("CLUSTER_SECRET", "cluster_secret", _optional_text, "",
         "signs fan-out messages between nodes; default derived from JWT_SECRET",
         secret=True),
    Spec("LOG_LEVEL", "log_level",
         _choice("debug", "info", "warning", "error", aliases={"warn": "warning"}), "info",
         "debug, info, warn (or warning) or error"),
    Spec("LOG_FORMAT", "log_format", _choice("auto", "console", "json"), "auto",
         "auto: console in development, JSON lines in production"),
)


@dataclass(frozen=True)
class Settings:
    environment: Environment = "development"
    host: str | None = None  # WS_HOST=auto: see listen_host
    port: int = 8080
    server_id: str | None = None
    use_https: bool = False
    cert_path: str | None = None
    key_path: str | None = None
    main_site_url: str | None = None
    auth_verify_url: str | None = None
    auth_verify_timeout_ms: int = 2000
    auth_verify_cache_s: int = 60
    cors_origins: tuple[str, ...] = ()
    demo_page: bool | None = None
    jwt_secret: str | None = None
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_public_key_path: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: int = 30
    jwt_require_exp: bool = True
    jwt_max_ttl_s: int = 2592000
    user_id_type: UserIdType = "int"
    conversation_access: ConversationAccess = "members"
    auth_timeout_ms: int = 10000
    typing_timeout_ms: int = 6000
    presence_grace_ms: int = 2000
    presence_ttl_ms: int = 30000
    db_timeout_ms: int = 3000
    shutdown_timeout_ms: int = 10000
    max_message_length: int = 4000
    max_payload_bytes: int = 65536
    rate_limit_events: int = 20
    rate_limit_messages: int = 5
    rate_limit_conversations: int = 10
    max_conversation_members: int = 1000
    member_add_policy: MemberAddPolicy = "anyone"
    long_poll_timeout_ms: int = 25000
    http_keepalive_timeout_ms: int = 10000
    http_body_timeout_ms: int = 10000
    max_polls_per_user: int = 20
    event_log_retention_s: int = 86400
    message_retention_days: int = 0
    api_key: str | None = None
    max_connections_per_user: int = 20
    max_unauthenticated_per_ip: int = 50
    max_rooms_per_socket: int = 500
    presence_list_max: int = 200
    replay_max_messages: int = 1000
    trust_proxy: bool = False
    ping_interval_ms: int = 25000
    ping_timeout_ms: int = 20000
    ws_compression: bool = False
    ws_max_buffered_bytes: int = 8388608
    max_buffered_packets: int = 5000
    upgrade_timeout_ms: int = 10000
    presence_scope: PresenceScope = "global"
    event_loop: EventLoop = "uvloop"
    membership_cache_s: int = 60
    database_url: str = "sqlite:///./data/ecigdis-ws.db"
    db_pool_min: int = 1
    db_pool_max: int = 10
    db_connect_timeout_ms: int = 3000
    db_pool_recycle_s: int = 3600
    db_table_prefix: str = "chat_"
    migrate_on_start: bool = False
    redis_url: str | None = None
    redis_host: str | None = None
    redis_port: int = 6379
    redis_password: str | None = None
    redis_db: int = 0
    redis_key_prefix: str = "ecigdis-ws"
    redis_timeout_ms: int = 1000
    fanout_channels: FanoutChannels = "per-room"
    fanout_unsubscribe_delay_ms: int = 10000
    cluster_secret: str | None = None
    log_level: LogLevel = "info"
    log_format: LogFormat = "auto"
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


def load_settings(
    environ: Mapping[str, str] | None = None, dotenv_path: str | Path | None = ".env"
) -> Settings:
    """Build Settings from the environment over `.env` over the defaults.

    Raises SettingsError listing every invalid variable at once, so an operator
    fixes an env file in one pass.
    """
    env = dict(os.environ if environ is None else environ)
    dotenv = _read_dotenv(dotenv_path)
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    problems: list[str] = []
    for spec in SPECS:
        raw, source = _lookup(spec, env, dotenv)
        try:
            values[spec.attr] = spec.parse(raw)
        except ValueError as exc:
            problems.append(f"{spec.name}={_shown(spec, raw)!r}: {exc}")
            continue
        sources[spec.attr] = source
    # An invalid variable falls back to its default here only so that the cross
    # checks still run: every problem is reported in one pass.
    settings = Settings(**values, sources=sources)
    problems.extend(_cross_checks(settings))
    if problems:
        raise SettingsError(problems)
    return settings


def notify_socket(environ: Mapping[str, str] | None = None) -> str | None:
    """$NOTIFY_SOCKET, where `serve` reports readiness to systemd (Type=notify).

    Not a setting in SPECS: systemd sets it, an operator never does, and a unit's
    EnvironmentFile wins over systemd's own variables, so an env file copied from
    .env.example with an empty `NOTIFY_SOCKET=` line would silently break start-up.
    Read from the process environment only, never from `.env`.
    """
    env = os.environ if environ is None else environ
    return env.get("NOTIFY_SOCKET") or None


def _read_dotenv(path: str | Path | None) -> dict[str, str]:
    if path is None or not Path(path).is_file():
        return {}
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def _lookup(spec: Spec, env: Mapping[str, str], dotenv: Mapping[str, str]) -> tuple[str, Source]:
    for source, table in ((Source.ENVIRONMENT, env), (Source.DOTENV, dotenv)):
        for name in (spec.name, *spec.aliases):
            if name in table:
                return table[name], source
    return spec.default, Source.DEFAULT


def _shown(spec: Spec, raw: str) -> str:
    return "***" if spec.secret and raw else raw


CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS
CLUSTER_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


@dataclass(frozen=True)
class ClusterAddress:
    """What a redis+cluster:// URL says: where to discover the cluster, and how to log in."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool
    # redis-py's ssl_* options from the URL's query (see CLUSTER_TLS_OPTIONS).
    tls_files: dict[str, str] = field(default_factory=dict)


def is_cluster_url(url: str) -> bool:
    return urlparse(url).scheme in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterAddress:
    """redis+cluster://[user:password@]host[:port][,host[:port]...][/0], or
    rediss+cluster://…[?ssl_ca_certs=…]; ValueError saying what is wrong otherwise
    (a cluster has only database 0)."""
    parts = urlparse(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        raise ValueError("expected redis+cluster:// or rediss+cluster://")
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    if parts.path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has only database 0")
    tls = CLUSTER_SCHEMES[parts.scheme]
    nodes = tuple(_host_port(item) for item in hosts.split(","))
    return ClusterAddress(nodes, unquote(username) or None, unquote(password) or None,
                          tls, _tls_files(parts.query, tls))


def _tls_files(query: str, tls: bool) -> dict[str, str]:
    """?ssl_ca_certs=/path&ssl_certfile=...&ssl_keyfile=... (rediss:// passes the same
    names to redis-py): the CA that signed the cluster's certificates, when the
    system's CAs did not, and this server's client certificate, when the cluster
    asks for one (redis-server's tls-auth-clients, yes by default)."""
    options = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    unknown = sorted(set(options) - set(CLUSTER_TLS_OPTIONS))
    if unknown:
        raise ValueError(f"a Redis Cluster URL takes only {', '.join(CLUSTER_TLS_OPTIONS)} "
                         f"(not {', '.join(unknown)})")
    if options and not tls:
        raise ValueError("ssl_* options need rediss+cluster://")
    if any(len(values) != 1 or not values[0] for values in options.values()):
        raise ValueError("each ssl_* option once, with a file's path")
    return {name: values[0] for name, values in options.items()}


def _host_port(item: str) -> tuple[str, int]:
    host, colon, port = item.strip().rpartition(":")
    if not colon or not host:  # "host" alone: the default port
        host, port = item.strip(), str(DEFAULT_CLUSTER_PORT)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a host:port: {item!r}")
    return host, int(port)


def _cross_checks(settings: Settings) -> list[str]:
    problems: list[str] = []
    if settings.is_production:
        secret = settings.jwt_secret or ""
        uses_hmac = any(alg.startswith("HS") for alg in settings.jwt_algorithms)
        if uses_hmac and (len(secret) < MIN_PRODUCTION_SECRET_LENGTH or secret in WEAK_SECRETS):
            problems.append(
                "JWT_SECRET: production needs a secret of at least "
                f"{MIN_PRODUCTION_SECRET_LENGTH} characters that is not a known default"
            )
        if settings.api_key and len(settings.api_key) < MIN_PRODUCTION_SECRET_LENGTH:
            problems.append(f"API_KEY: production needs at least {MIN_PRODUCTION_SECRET_LENGTH} "
                            "characters (or leave it empty to turn /api/server/* off)")
    if settings.db_pool_min > settings.db_pool_max:
        problems.append("DB_POOL_MIN must not be larger than DB_POOL_MAX")
    if not settings.db_table_prefix.replace("_", "").isalnum() and settings.db_table_prefix:
        problems.append("DB_TABLE_PREFIX: letters, digits and _ only")
    problems += _redis_problems(settings)
    if settings.use_https and not (settings.cert_path and settings.key_path):
        problems.append("USE_HTTPS=true needs both CERT_PATH and KEY_PATH")
    if any(not alg.startswith("HS") for alg in settings.jwt_algorithms) and not (
        settings.jwt_public_key_path
    ):
        problems.append("JWT_ALGORITHMS with RS*/ES* needs JWT_PUBLIC_KEY_PATH")
    return problems


def _redis_problems(settings: Settings) -> list[str]:
    url = settings.redis_url
    if not url:
        return []
    schemes = ("redis", "rediss", "redis+sentinel", "unix", *CLUSTER_SCHEMES)
    if not url.startswith(tuple(f"{scheme}://" for scheme in schemes)):
        return [f"REDIS_URL: expected {REDIS_URL_FORMS}"]
    if not is_cluster_url(url):
        return []
    try:
        parse_cluster_url(url)
    except ValueError as exc:
        return [f"REDIS_URL: {exc}"]
    if "{" in settings.redis_key_prefix or "}" in settings.redis_key_prefix:
        # The prefix becomes the keys' hash tag on a cluster: a brace would cut it short.
        return ["REDIS_KEY_PREFIX: no { or } with a Redis Cluster"]
    return []


def render_env_example() -> str:
    """The text of `.env.example`: every setting, its default and why it exists."""
    lines = ["# ecigdis-ws settings: environment variables, or this file copied to .env", ""]
    for spec in SPECS:
        aliases = f" (also {', '.join(spec.aliases)})" if spec.aliases else ""
        lines.append(f"# {spec.doc}{aliases}")
        lines.append(f"{spec.name}={spec.default}")
        lines.append("")
    return "\n".join(lines)
