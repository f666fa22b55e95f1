"""The settings of how the chat is served, by topic: the process, signing in, the
chat's own rules, and the limits on one client. settings/model.py adds the rest
(transport, database, Redis, logging) and is `Settings`."""

from __future__ import annotations

from dataclasses import dataclass

from ecigdis_ws.settings.declare import (
    AUTH,
    CHAT,
    LIMITS,
    MS_MAX,
    SERVER,
    ConversationAccess,
    Environment,
    EventLoop,
    MemberAddPolicy,
    PresenceScope,
    UserIdType,
    address_or_auto,
    algorithms,
    auto_bool,
    boolean,
    choice,
    csv,
    int_range,
    optional_text,
    setting,
)


@dataclass(frozen=True)
class ServerSettings:
    """The server settings: the process: where it listens, TLS, the demo page, shutdown."""

    environment: Environment = setting(
        "NODE_ENV", choice("development", "production", "test"), "development", SERVER,
        "development, production or test; production turns on the strict checks",
    )
    host: str | None = setting(
        "WS_HOST", address_or_auto, "auto", SERVER,
        "address to listen on (the Node server's name); auto: 127.0.0.1 in development, "
        "where POST /dev/token signs anyone in as anyone, else 0.0.0.0",
    )
    port: int = setting(
        "WS_PORT", int_range(0, 65535), "8080", SERVER,
        "port for Socket.IO and HTTP (the Node server's name)",
        aliases=("PORT",),
    )
    server_id: str | None = setting(
        "SERVER_ID", optional_text, "", SERVER,
        "this node's id in `connected` and /status; default host name plus port",
    )
    use_https: bool = setting(
        "USE_HTTPS", boolean, "false", SERVER,
        "serve https/wss on the same port",
    )
    cert_path: str | None = setting(
        "CERT_PATH", optional_text, "", SERVER,
        "PEM certificate chain when USE_HTTPS=true",
    )
    key_path: str | None = setting(
        "KEY_PATH", optional_text, "", SERVER,
        "PEM private key when USE_HTTPS=true",
    )
    main_site_url: str | None = setting(
        "MAIN_SITE_URL", optional_text, "", SERVER,
        "the portal's base URL (kept for the Node server's env files)",
    )
    cors_origins: tuple[str, ...] = setting(
        "CORS_ORIGINS", csv, "", SERVER,
        "comma-separated exact Origin allowlist; empty allows every origin in development",
    )
    demo_page: bool | None = setting(
        "DEMO_PAGE", auto_bool, "auto", SERVER,
        "serve the demo chat page at /; auto: only when NODE_ENV=development",
    )
    trust_proxy: bool = setting(
        "TRUST_PROXY", boolean, "false", SERVER,
        "take the client address from X-Forwarded-For (only behind your own proxy)",
    )
    event_loop: EventLoop = setting(
        "EVENT_LOOP", choice("uvloop", "asyncio"), "uvloop", SERVER,
        "uvloop (libuv: faster I/O and timers) or asyncio's own loop",
    )
    shutdown_timeout_ms: int = setting(
        "SHUTDOWN_TIMEOUT_MS", int_range(0, MS_MAX), "10000", SERVER,
        "on SIGTERM, how long running events may take before sockets are closed",
    )


@dataclass(frozen=True)
class AuthSettings(ServerSettings):
    """The auth settings: who a token says the user is, and the main site that
    vouches for others."""

    auth_verify_url: str | None = setting(
        "AUTH_VERIFY_URL", optional_text, "", AUTH,
        "main-site endpoint for tokens the JWT check cannot decide, e.g. "
        "${MAIN_SITE_URL}/api/messenger/verify-token",
    )
    auth_verify_timeout_ms: int = setting(
        "AUTH_VERIFY_TIMEOUT_MS", int_range(50, 60_000), "2000", AUTH,
        "give up on the main site after this long and refuse the token",
    )
    auth_verify_cache_s: int = setting(
        "AUTH_VERIFY_CACHE_S", int_range(0, 86400), "60", AUTH,
        "how long a main-site answer is reused for the same token",
    )
    jwt_secret: str | None = setting(
        "JWT_SECRET", optional_text, "", AUTH,
        "HS* signing secret; required and 32+ characters in production",
        secret=True,
    )
    jwt_algorithms: tuple[str, ...] = setting(
        "JWT_ALGORITHMS", algorithms, "HS256", AUTH,
        "accepted JWT algorithms; `none` is never accepted",
    )
    jwt_public_key_path: str | None = setting(
        "JWT_PUBLIC_KEY_PATH", optional_text, "", AUTH,
        "PEM public key for RS*/ES* algorithms",
    )
    jwt_issuer: str | None = setting(
        "JWT_ISSUER", optional_text, "", AUTH,
        "required `iss` claim, when set",
    )
    jwt_audience: str | None = setting(
        "JWT_AUDIENCE", optional_text, "", AUTH,
        "required `aud` claim, when set",
    )
    jwt_leeway_s: int = setting(
        "JWT_LEEWAY_S", int_range(0, 3600), "30", AUTH,
        "clock skew tolerated on exp/nbf between the portal and this machine",
    )
    jwt_require_exp: bool = setting(
        "JWT_REQUIRE_EXP", boolean, "true", AUTH,
        "refuse tokens without `exp` so a leaked token cannot live forever",
    )
    jwt_max_ttl_s: int = setting(
        "JWT_MAX_TTL_S", int_range(0, 10 * 365 * 86400), "2592000", AUTH,
        "refuse tokens whose `exp` lies further ahead than this (an `exp` of 1e30 is a "
        "token that never expires); 0 turns it off; tokens without `exp` are untouched",
    )
    user_id_type: UserIdType = setting(
        "USER_ID_TYPE", choice("int", "string"), "int", AUTH,
        "int: user ids are integers; string: 1-64 character strings",
    )
    auth_timeout_ms: int = setting(
        "AUTH_TIMEOUT_MS", int_range(100, MS_MAX), "10000", AUTH,
        "a connection not authenticated this long after its handshake is closed (and a "
        "socket whose token expired, this long after)",
    )
    api_key: str | None = setting(
        "API_KEY", optional_text, "", AUTH,
        "key the main site sends as X-API-Key to /api/server/*; empty turns those routes "
        "off (404)",
        secret=True,
    )


@dataclass(frozen=True)
class ChatSettings(AuthSettings):
    """The chat settings: conversations, messages, typing and presence."""

    conversation_access: ConversationAccess = setting(
        "CONVERSATION_ACCESS", choice("members", "open"), "members", CHAT,
        "members: only listed members may use a conversation; open: anyone, joining on use",
    )
    member_add_policy: MemberAddPolicy = setting(
        "MEMBER_ADD_POLICY", choice("anyone", "contacts", "server_api"), "anyone", CHAT,
        "whom a user may put into a conversation they create: anyone (as the Node "
        "server), contacts (users they already share a conversation with) or "
        "server_api (only themselves; only the main site adds others)",
    )
    max_message_length: int = setting(
        "MAX_MESSAGE_LENGTH", int_range(1, 1_000_000), "4000", CHAT,
        "characters of text per message",
    )
    max_conversation_members: int = setting(
        "MAX_CONVERSATION_MEMBERS", int_range(2, 1_000_000), "1000", CHAT,
        "members of one conversation, its creator included; a create or add past "
        "it is refused before anything is written (the benchmark's broadcast group is 1000)",
    )
    message_edit_window_s: int = setting(
        "MESSAGE_EDIT_WINDOW_S", int_range(0, 31_536_000), "900", CHAT,
        "how long after sending its sender may edit a message (0: always); 15 minutes "
        "fixes a typo, while a rota or a price others acted on does not change hours later",
    )
    max_pins_per_conversation: int = setting(
        "MAX_PINS_PER_CONVERSATION", int_range(1, 1000), "50", CHAT,
        "pinned messages per conversation: a pinned bar past fifty is a second history",
    )
    max_mentions: int = setting(
        "MAX_MENTIONS", int_range(1, 1000), "50", CHAT,
        "users one message may mention; everyone is one mention (admins only)",
    )
    membership_cache_s: int = setting(
        "MEMBERSHIP_CACHE_S", int_range(0, 86400), "60", CHAT,
        "how long a positive membership check is trusted without asking the database; "
        "changes made through this server invalidate it at once, 0 turns the cache off",
    )
    typing_timeout_ms: int = setting(
        "TYPING_TIMEOUT_MS", int_range(100, MS_MAX), "6000", CHAT,
        "typing ends by itself after this long without a new typing:start",
    )
    presence_grace_ms: int = setting(
        "PRESENCE_GRACE_MS", int_range(0, MS_MAX), "2000", CHAT,
        "delay before user:offline so a page reload does not flap",
    )
    presence_ttl_ms: int = setting(
        "PRESENCE_TTL_MS", int_range(1000, MS_MAX), "30000", CHAT,
        "a node that stops refreshing presence this long has its users reported offline",
    )
    presence_scope: PresenceScope = setting(
        "PRESENCE_SCOPE", choice("global", "contacts"), "global", CHAT,
        "who hears user:online/offline and whom presence:request lists: everyone, or only "
        "users who share a conversation (contacts: no quadratic broadcast in a connect storm)",
    )
    presence_list_max: int = setting(
        "PRESENCE_LIST_MAX", int_range(1, 1_000_000), "200", CHAT,
        "users in one presence:request answer, which says truncated: true when more "
        "are online (a small request must not buy the whole online list)",
    )
    replay_max_messages: int = setting(
        "REPLAY_MAX_MESSAGES", int_range(1, 1_000_000), "1000", CHAT,
        "messages one conversation:join with since replays at most; past it the answer "
        "says resync: true and the client pages the rest from history",
    )


@dataclass(frozen=True)
class LimitSettings(ChatSettings):
    """The limits settings: what one client, user or address may hold or send."""

    max_payload_bytes: int = setting(
        "MAX_PAYLOAD_BYTES", int_range(1024, 100_000_000), "65536", LIMITS,
        "bytes per Socket.IO packet; larger packets close the connection",
    )
    rate_limit_events: int = setting(
        "RATE_LIMIT_EVENTS", int_range(0, 1_000_000), "20", LIMITS,
        "events per second per socket (bursts of twice that); 0 turns it off",
    )
    rate_limit_messages: int = setting(
        "RATE_LIMIT_MESSAGES", int_range(0, 1_000_000), "5", LIMITS,
        "message:send per second per user (bursts of twice that); 0 turns it off",
    )
    rate_limit_conversations: int = setting(
        "RATE_LIMIT_CONVERSATIONS", int_range(0, 1_000_000), "10", LIMITS,
        "conversations one user may create per minute over REST (bursts of twice "
        "that; the server API is not limited); each create holds the database writer, "
        "0 turns it off",
    )
    max_connections_per_user: int = setting(
        "MAX_CONNECTIONS_PER_USER", int_range(0, 100_000), "20", LIMITS,
        "sockets one user may hold on a node (tabs and devices); 0 turns it off",
    )
    max_unauthenticated_per_ip: int = setting(
        "MAX_UNAUTHENTICATED_PER_IP", int_range(0, 1_000_000), "50", LIMITS,
        "connections from one address between their handshake and authentication; "
        "past it a handshake is answered 429; 0 turns it off",
    )
    max_rooms_per_socket: int = setting(
        "MAX_ROOMS_PER_SOCKET", int_range(0, 1_000_000), "500", LIMITS,
        "conversations one socket may be joined to at once (each room costs memory and "
        "every disconnect walks all rooms); past it conversation:join is RATE_LIMITED; "
        "0 turns it off",
    )
    max_polls_per_user: int = setting(
        "MAX_POLLS_PER_USER", int_range(0, 100_000), "20", LIMITS,
        "GET /api/messenger/poll requests one user may have held at once on a node (one "
        "per tab in HTTP fallback); past it 429 RATE_LIMITED; 0 turns it off",
    )
    ws_max_buffered_bytes: int = setting(
        "WS_MAX_BUFFERED_BYTES", int_range(65536, 1_000_000_000), "8388608", LIMITS,
        "a client (websocket or polling) this far behind on reading is "
        "disconnected as too slow (as Centrifugo does), so it cannot grow the server's "
        "memory; generous, as the Node server never cut a slow client",
    )
    max_buffered_packets: int = setting(
        "MAX_BUFFERED_PACKETS", int_range(16, 10_000_000), "5000", LIMITS,
        "a polling client with this many packets waiting for it is disconnected as too "
        "slow: each waiting packet is an object of its own, whatever its size",
    )
