"""How a setting is declared: its parser, its topic, and `setting()`, which makes a
`Settings` field out of a name, a parser, a default, a topic and a reason.

Each setting is declared once, as a field of `Settings` (settings/model.py);
`SPECS`, `.env.example` and `ecigdis-ws config` are derived from those fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

Environment = Literal["development", "production", "test"]
UserIdType = Literal["int", "string"]
ConversationAccess = Literal["members", "open"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "console", "json"]
PresenceScope = Literal["global", "contacts"]
FanoutChannels = Literal["per-room", "single"]
MemberAddPolicy = Literal["anyone", "contacts", "server_api"]
EventLoop = Literal["uvloop", "asyncio"]


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


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false")


def auto_bool(raw: str) -> bool | None:
    """auto (None: decided from other settings), or true/false."""
    if raw.strip().lower() == "auto":
        return None
    try:
        return boolean(raw)
    except ValueError:
        raise ValueError("expected auto, true or false") from None


def int_range(low: int, high: int) -> Parser:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return value

    return parse


def choice(*choices: str, aliases: Mapping[str, str] | None = None) -> Parser:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        value = (aliases or {}).get(value, value)
        if value not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return value

    return parse


def text(raw: str) -> str:
    return raw.strip()


def optional_text(raw: str) -> str | None:
    return raw.strip() or None


def address_or_auto(raw: str) -> str | None:
    """An address to listen on, or auto (None: decided by NODE_ENV)."""
    value = raw.strip()
    return None if value.lower() in ("", "auto") else value


def csv(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def algorithms(raw: str) -> tuple[str, ...]:
    allowed = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}
    values = tuple(item.strip().upper() for item in raw.split(",") if item.strip())
    if not values or any(value not in allowed for value in values):
        raise ValueError("expected a comma-separated list of " + ", ".join(sorted(allowed)))
    return values


def database_url(raw: str) -> str:
    value = raw.strip()
    if not value.startswith(("sqlite://", "mysql://", "mariadb://")):
        raise ValueError("expected sqlite:///path or mysql://user:pass@host:3306/db")
    return value


# Milliseconds a timeout setting may be at most: a day.
MS_MAX = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    """A group of settings, with a header of its own in `.env.example`."""

    name: str
    about: str


# The topics, in the order `.env.example` lists them.
SERVER = Topic("server", "the process: where it listens, TLS, the demo page, shutdown")
AUTH = Topic("auth", "who a token says the user is, and the main site that vouches for others")
CHAT = Topic("chat", "conversations, messages, typing and presence")
LIMITS = Topic("limits", "what one client, user or address may hold or send")
TRANSPORT = Topic("transport", "heartbeats, upgrades and HTTP deadlines")
DATABASE = Topic("database", "where everything is stored, and for how long")
REDIS = Topic("redis", "several nodes over Redis")
LOGGING = Topic("logging", "what the log says and how")


@dataclass(frozen=True)
class Spec:
    name: str
    attr: str
    parse: Parser
    default: str
    doc: str
    aliases: tuple[str, ...] = ()
    secret: bool = False
    topic: Topic | None = None


def setting(
    name: str,
    parse: Parser,
    default: str,
    topic: Topic,
    doc: str,
    *,
    aliases: tuple[str, ...] = (),
    secret: bool = False,
) -> Any:
    """A `Settings` field: its default is `default` as `parse` reads it, and its
    metadata the Spec the environment, `.env` and `ecigdis-ws config` go by (its
    attribute is filled in from the field's name)."""
    spec = Spec(name, "", parse, default, doc, aliases, secret, topic)
    return field(default=parse(default), metadata={"spec": spec})
