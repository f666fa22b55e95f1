"""`ecigdis-ws check URL`: the subcommand's arguments, and its output and exit status."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from ecigdis_ws.clock import SystemClock
from ecigdis_ws.ops.check.options import DEFAULT_STEP_TIMEOUT_S, CheckOptions
from ecigdis_ws.ops.check.results import passed, summary
from ecigdis_ws.ops.check.steps import run_check
from ecigdis_ws.services.auth import mint_token, parse_user_id
from ecigdis_ws.settings import SettingsError, load_settings

# A step that needs longer than 10 minutes is a failure whatever the setting.
MAX_STEP_TIMEOUT_S = 600.0
# A token minted for --user is used only by this check: it need not outlive it.
MINTED_TOKEN_TTL_S = 300


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= MAX_STEP_TIMEOUT_S:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and {MAX_STEP_TIMEOUT_S:g}")
    return value


def register(commands: Any) -> None:
    """Add the `check` subcommand to the CLI's subparsers."""
    parser = commands.add_parser(
        "check", help="connect to a server like a client does and report each step",
        description="Connect, authenticate, join, send, ask for presence and read /health, "
                    "one line per step. Exit status 0 only when every step passed.",
    )
    parser.add_argument("url", help="the server's URL, e.g. https://chat.example.com or "
                                    "http://127.0.0.1:8080")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--token", help="a token as the portal issues it")
    who.add_argument("--user", help="mint a token for this user id with the local "
                                    "settings' JWT_SECRET (.env / environment)")
    parser.add_argument("--conversation", type=_positive_int, metavar="ID",
                        help="a conversation the user belongs to; the check sends one "
                             "message to it")
    parser.add_argument("--origin", help="the Origin header to send, as a browser on that "
                                         "site would (checks CORS_ORIGINS)")
    parser.add_argument("--transport", choices=("auto", "polling", "websocket"),
                        default="auto", help="auto: polling, then upgrade to websocket, "
                                             "as browsers do (default)")
    parser.add_argument("--ca-file", metavar="PEM",
                        help="trust the CA certificates in this file for https/wss")
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_STEP_TIMEOUT_S,
                        metavar="S", help=f"per step (default {DEFAULT_STEP_TIMEOUT_S:g} s)")


def run(args: argparse.Namespace) -> int:
    url: str = args.url
    if not url.startswith(("http://", "https://")):
        print(f"ecigdis-ws: {url!r}: expected an http:// or https:// URL", file=sys.stderr)
        return 2
    if args.ca_file is not None and not os.path.isfile(args.ca_file):
        print(f"ecigdis-ws: --ca-file {args.ca_file}: no such file", file=sys.stderr)
        return 2
    token: str | None = args.token
    if args.user is not None:
        try:
            settings = load_settings()
        except SettingsError as exc:
            print(f"ecigdis-ws: --user needs the local settings: {exc}", file=sys.stderr)
            return 2
        user_id = parse_user_id(args.user, settings.user_id_type)
        if user_id is None:
            print(f"ecigdis-ws: {args.user!r} is not a valid user id "
                  f"(USER_ID_TYPE={settings.user_id_type})", file=sys.stderr)
            return 2
        try:
            token = mint_token(settings, SystemClock(), user_id, f"ecigdis-ws check {user_id}",
                               MINTED_TOKEN_TTL_S)
        except ValueError as exc:
            print(f"ecigdis-ws: cannot mint a token: {exc}", file=sys.stderr)
            return 2
    options = CheckOptions(
        url=url, token=token, conversation_id=args.conversation, origin=args.origin,
        transport=args.transport, ca_file=args.ca_file, timeout_s=args.timeout,
    )
    print(f"ecigdis-ws check {url}", flush=True)
    try:
        results = asyncio.run(run_check(options, lambda r: print(r.line(), flush=True)))
    except KeyboardInterrupt:
        print("check interrupted", file=sys.stderr)
        return 130
    if passed(results):
        print(summary(results))
        return 0
    print(f"check failed: {summary(results)}")
    return 1
