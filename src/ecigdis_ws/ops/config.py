"""`ecigdis-ws config`: the effective configuration, or every problem with it.

One line per setting of `settings.SPECS`: its name, where the value came from
(default, .env or environment) and the value, secrets masked. Meant to be run
before a restart, against the env file the service will read:

    ecigdis-ws config --env-file /etc/ecigdis-ws/env

Exit status 0 when the configuration loads, 2 (as `serve` would) with every
problem listed when it does not.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ecigdis_ws.settings import SPECS, Settings, SettingsError, Source, Spec, load_settings

MASK = "********"
# Settings whose whole value is a secret, besides those SPECS marks `secret`: a
# setting added later under one of these names is masked without anyone remembering.
_SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE_KEY)$")
# Query parameters of a URL setting that carry a credential.
_SECRET_PARAM = re.compile(r"(secret|password|passwd|token|key|signature|sig)", re.IGNORECASE)


def register(commands: Any) -> None:
    """Add the `config` subcommand to the CLI's subparsers."""
    parser = commands.add_parser(
        "config", help="print the effective configuration, or every problem with it"
    )
    parser.add_argument(
        "--env-file", metavar="PATH",
        help="the dotenv file to read (default: .env in the working directory), "
             "e.g. /etc/ecigdis-ws/env",
    )


def run(args: argparse.Namespace) -> int:
    env_file: str | None = args.env_file
    if env_file is not None and not Path(env_file).is_file():
        print(f"ecigdis-ws: no such env file: {env_file}", file=sys.stderr)
        return 2
    return show(dotenv_path=env_file or ".env")


def show(dotenv_path: str | Path | None = ".env", out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        settings = load_settings(dotenv_path=dotenv_path)
    except SettingsError as exc:
        print(f"ecigdis-ws: {exc}", file=err)
        return 2
    dotenv = Path(dotenv_path).resolve() if dotenv_path is not None else None
    shown_dotenv = str(dotenv) if dotenv is not None and dotenv.is_file() else "none"
    print(f"# ecigdis-ws configuration: environment over .env ({shown_dotenv}) over defaults",
          file=out)
    rows = [(spec.name, str(settings.sources.get(spec.attr, Source.DEFAULT)),
             display(spec, getattr(settings, spec.attr))) for spec in SPECS]
    name_width = max(len(name) for name, _, _ in rows)
    source_width = max(len(str(source)) for source in Source)
    for name, source, value in rows:
        print(f"{name:<{name_width}}  {source:<{source_width}}  {value}".rstrip(), file=out)
    for line in _derived(settings):
        print(f"# {line}", file=out)
    return 0


def display(spec: Spec, value: object) -> str:
    """The value as an env file would hold it, with secrets masked."""
    if value is None or value == ():
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, tuple):
        text = ",".join(str(item) for item in value)
    else:
        text = str(value)
    if spec.secret or _SECRET_NAME.search(spec.name):
        return MASK
    return mask_url(text) if "://" in text else text


def mask_url(text: str) -> str:
    """A URL with the password of its user info and credential query values masked."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(key) for key, _ in pairs):
            query = urlencode(
                [(key, MASK if _SECRET_PARAM.search(key) else val) for key, val in pairs],
                safe="*",
            )
    if (netloc, query) == (parts.netloc, parts.query):
        return text  # nothing to mask; urlunsplit would drop sqlite:///'s empty host
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _derived(settings: Settings) -> list[str]:
    """What the server makes of the settings where it is not obvious from them."""
    redis = settings.effective_redis_url
    lines = [
        f"listens on: {settings.listen_host}:{settings.port}",
        f"server id: {settings.effective_server_id}",
        f"redis: {mask_url(redis) if redis else 'disabled (a single node)'}",
        f"logs: {'JSON lines' if settings.json_logs else 'console'}",
    ]
    if settings.uses_dev_secret:
        lines.append("JWT_SECRET is unset: the development secret signs and checks tokens")
    return lines
