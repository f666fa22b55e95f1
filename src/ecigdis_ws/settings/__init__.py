"""The one typed settings object, read once at start from the environment and `.env`.

Every variable is declared once, as a field of `Settings` (settings/model.py) with
its parser, default, topic and a one-line reason; `SPECS`, `.env.example` and
`ecigdis-ws config` are derived from the fields, so they never drift apart.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from ecigdis_ws.settings.checks import (
    DEV_JWT_SECRET,
    MIN_PRODUCTION_SECRET_LENGTH,
    WEAK_SECRETS,
    cross_checks,
)
from ecigdis_ws.settings.declare import (
    ConversationAccess,
    Environment,
    EventLoop,
    FanoutChannels,
    LogFormat,
    LogLevel,
    MemberAddPolicy,
    Parser,
    PresenceScope,
    SettingsError,
    Source,
    Spec,
    Topic,
    UserIdType,
)
from ecigdis_ws.settings.model import Settings
from ecigdis_ws.settings.redis_urls import (
    CLUSTER_SCHEMES,
    CLUSTER_TLS_OPTIONS,
    DEFAULT_CLUSTER_PORT,
    REDIS_URL_FORMS,
    ClusterAddress,
    is_cluster_url,
    parse_cluster_url,
)

__all__ = [
    "CLUSTER_SCHEMES", "CLUSTER_TLS_OPTIONS", "DEFAULT_CLUSTER_PORT", "DEV_JWT_SECRET",
    "MIN_PRODUCTION_SECRET_LENGTH", "REDIS_URL_FORMS", "SPECS", "WEAK_SECRETS",
    "ClusterAddress", "ConversationAccess", "Environment", "EventLoop", "FanoutChannels",
    "LogFormat", "LogLevel", "MemberAddPolicy", "Parser", "PresenceScope", "Settings",
    "SettingsError", "Source", "Spec", "Topic", "UserIdType", "is_cluster_url",
    "load_settings", "notify_socket", "parse_cluster_url", "render_env_example",
]

# Every setting, in declaration order: the fields' own Specs, with their attributes.
SPECS: tuple[Spec, ...] = tuple(
    dataclasses.replace(f.metadata["spec"], attr=f.name)
    for f in dataclasses.fields(Settings) if "spec" in f.metadata
)


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
    problems.extend(cross_checks(settings))
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


def render_env_example() -> str:
    """The text of `.env.example`: every setting by topic, its default and why it exists."""
    lines = ["# ecigdis-ws settings: environment variables, or this file copied to .env", ""]
    topic: Topic | None = None
    for spec in SPECS:
        if spec.topic is not topic and spec.topic is not None:
            topic = spec.topic
            lines += [f"# == {topic.name}: {topic.about} ==", ""]
        aliases = f" (also {', '.join(spec.aliases)})" if spec.aliases else ""
        lines.append(f"# {spec.doc}{aliases}")
        lines.append(f"{spec.name}={spec.default}")
        lines.append("")
    return "\n".join(lines)
