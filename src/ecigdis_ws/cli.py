"""`ecigdis-ws`: serve, migrate, mint tokens, manage conversations."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import gc
import os
import re
import signal
import ssl
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import uvloop
from aiohttp import web

from ecigdis_ws import __version__
from ecigdis_ws.app import NotMigrated, create_app
from ecigdis_ws.bench.command import add_bench_parser, bench_command
from ecigdis_ws.clock import SystemClock
from ecigdis_ws.errors import StorageUnavailable
from ecigdis_ws.observability.log_setup import configure_logging, get_logger
from ecigdis_ws.ops import config as config_command
from ecigdis_ws.ops.check import command as check_command
from ecigdis_ws.ops.sd_notify import notify
from ecigdis_ws.services.auth import mint_token, parse_user_id
from ecigdis_ws.settings import Settings, SettingsError, load_settings, notify_socket
from ecigdis_ws.storage.base import ConversationFull
from ecigdis_ws.storage.factory import open_storage
from ecigdis_ws.storage.sql import SqlStorage

# Young-generation allocations between collections, then how many young and
# middle collections before an older one (CPython's defaults: 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 100)
# The socket.io default backlog of 511 (Node's) keeps a connect storm from being refused.
LISTEN_BACKLOG = 511
# The status of a process killed by SIGPIPE, which is what `cmd | head` expects of
# a CLI whose reader went away (128 + the signal's number, as the shell reports it).
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: expected e.g. 3600, 90s, 30m, 1h or 7d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecigdis-ws", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ecigdis-ws {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the chat server")
    serve.add_argument("--host", help="overrides WS_HOST")
    serve.add_argument("--port", type=int, help="overrides WS_PORT")

    commands.add_parser("migrate", help="apply pending database migrations")

    token = commands.add_parser("token", help="mint a token with the configured secret")
    token.add_argument("--user", required=True, help="user id")
    token.add_argument("--name", required=True, help="display name")
    token.add_argument("--ttl", type=parse_duration, default=3600, help="lifetime (default 1h)")

    conversation = commands.add_parser("conversation", help="manage conversations")
    actions = conversation.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a conversation; prints its id")
    create.add_argument("--title", required=True)
    create.add_argument("--members", required=True, help="comma-separated user ids")
    add = actions.add_parser("add-member", help="add a user to a conversation")
    add.add_argument("conversation_id", type=int)
    add.add_argument("user")

    check_command.register(commands)
    config_command.register(commands)
    add_bench_parser(commands)
    return parser


# Commands that read the settings themselves: `config` reports invalid ones, and
# `check` needs them only to mint a token for --user.
_SELF_CONFIGURED: dict[str, Callable[[argparse.Namespace], int]] = {
    "check": check_command.run,
    "config": config_command.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; a reader that closed our stdout (`check … | head`) ends it quietly.

    Python ignores SIGPIPE, so the next write raises BrokenPipeError instead; the
    signal's default action is not restored because `serve` and `check` write to
    sockets, where SIGPIPE would kill the process. stdout is pointed at /dev/null so
    the interpreter's final flush does not raise again.
    """
    try:
        return _main(argv)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command in _SELF_CONFIGURED:
        return _SELF_CONFIGURED[args.command](args)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"ecigdis-ws: {exc}", file=sys.stderr)
        return 2
    command: Callable[[argparse.Namespace, Settings], int] = {
        "serve": _serve,
        "migrate": _migrate,
        "token": _token,
        "conversation": _conversation,
        "bench": bench_command,
    }[args.command]
    try:
        return command(args, settings)
    except UsageError as exc:
        print(f"ecigdis-ws: {exc}", file=sys.stderr)
        return 2


class UsageError(Exception):
    """A command's arguments are wrong: exit status 2, with the reason."""


def _user_id(settings: Settings, raw: str) -> Any:
    parsed = parse_user_id(raw, settings.user_id_type)
    if parsed is None:
        raise UsageError(f"{raw!r} is not a valid user id (USER_ID_TYPE={settings.user_id_type})")
    return parsed


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.use_https:
        return None
    assert settings.cert_path and settings.key_path
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.cert_path, settings.key_path)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(
            f"cannot load CERT_PATH={settings.cert_path} / KEY_PATH={settings.key_path}: {exc}"
        ) from None
    return context


def _tune_garbage_collector() -> None:
    """Collect cycles less often: each connection keeps thousands of long-lived
    objects, and under chat load the default thresholds spent about 15 % of the
    CPU re-scanning them (py-spy, BENCHMARKS.md). Objects that exist at start-up
    (modules, settings, the app) are moved out of the collector's sight."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = dataclasses.replace(settings, **overrides)
    configure_logging(settings)
    if settings.event_loop == "uvloop":
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    _tune_garbage_collector()
    ssl_context = _ssl_context(settings)
    app = create_app(settings, SystemClock())
    url = f"{'https' if ssl_context else 'http'}://{settings.listen_host}:{settings.port}"
    notify_to = notify_socket()  # systemd's, for Type=notify; None elsewhere

    def listening(_: str) -> None:
        # run_app calls this once every site listens, after the startup hooks (the
        # services' cleanup_ctx: storage opened, migrations checked) succeeded.
        get_logger("ecigdis_ws").info("listening", url=url, version=__version__,
                                      server_id=settings.effective_server_id)
        notify(notify_to, "READY=1", f"STATUS=accepting connections on {url}")

    async def stopping(_: web.Application) -> None:
        notify(notify_to, "STOPPING=1", "STATUS=closing connections")

    app.on_shutdown.insert(0, stopping)
    try:
        web.run_app(
            app,
            host=settings.listen_host,
            port=settings.port,
            ssl_context=ssl_context,
            backlog=LISTEN_BACKLOG,
            shutdown_timeout=settings.shutdown_timeout_ms / 1000,
            access_log=None,
            # Through the logger, so production's stream stays JSON lines throughout.
            print=listening,
        )
    except NotMigrated as exc:
        print(f"ecigdis-ws: {exc}", file=sys.stderr)
        return 1
    except StorageUnavailable as exc:
        print(f"ecigdis-ws: cannot open the database: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ecigdis-ws: cannot listen on {settings.listen_host}:{settings.port}: {exc}"
              f"{_listen_hint(exc, settings.port)}", file=sys.stderr)
        return 1
    return 0


def _listen_hint(exc: OSError, port: int) -> str:
    """The usual reasons a bind fails, each with its fix."""
    if exc.errno == errno.EADDRINUSE:
        return (f" (hint: another process has the port, `ss -ltnp 'sport = :{port}'` names "
                "it: stop it, or choose another port with WS_PORT or --port)")
    if exc.errno == errno.EACCES:
        return (" (hint: ports below 1024 need root: use a port above 1023 with WS_PORT or "
                "--port, with nginx in front on 80/443)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return " (hint: WS_HOST / --host is not an address of this machine)"
    return ""


def _with_storage(
    settings: Settings,
    work: Callable[[SqlStorage], Coroutine[Any, Any, int]],
    needs_schema: bool = True,
) -> int:
    async def run() -> int:
        storage = await open_storage(settings)
        try:
            if needs_schema:
                await _require_migrated(storage)
            return await work(storage)
        finally:
            await storage.close()

    try:
        return asyncio.run(run())
    except StorageUnavailable as exc:
        print(f"ecigdis-ws: cannot open the database: {exc}", file=sys.stderr)
        return 1


async def _require_migrated(storage: SqlStorage) -> None:
    """Refuse, as `serve` does, rather than fail on a missing table with a traceback."""
    pending = await storage.pending_migrations()
    if pending:
        raise UsageError(f"database has unapplied migrations {pending}: "
                         "run `ecigdis-ws migrate` first")


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def work(storage: SqlStorage) -> int:
        applied = await storage.migrate()
        print(f"applied migrations {applied}" if applied else "database is up to date")
        return 0

    return _with_storage(settings, work, needs_schema=False)


def _token(args: argparse.Namespace, settings: Settings) -> int:
    user_id = _user_id(settings, args.user)
    if settings.uses_dev_secret:
        # On stderr, so `TOKEN=$(ecigdis-ws token ...)` still captures only the token.
        print("ecigdis-ws: JWT_SECRET is not set: signed with the development secret, which "
              "only a server without JWT_SECRET accepts (production refuses it)",
              file=sys.stderr)
    print(mint_token(settings, SystemClock(), user_id, args.name, args.ttl))
    return 0


def _conversation(args: argparse.Namespace, settings: Settings) -> int:
    clock = SystemClock()

    async def create(storage: SqlStorage) -> int:
        members = [_user_id(settings, m) for m in args.members.split(",") if m.strip()]
        if not members:
            raise UsageError("--members needs at least one user id")
        members = list(dict.fromkeys(members))
        if len(members) > settings.max_conversation_members:
            raise UsageError(f"{len(members)} members: a conversation has at most "
                             f"{settings.max_conversation_members} (MAX_CONVERSATION_MEMBERS)")
        print(await storage.conversations.create_conversation(
            args.title, members, int(clock.now() * 1000)
        ))
        return 0

    async def add_member(storage: SqlStorage) -> int:
        user_id = _user_id(settings, args.user)
        if not await storage.conversations.conversation_exists(args.conversation_id):
            raise UsageError(f"no conversation {args.conversation_id}")
        try:
            added = await storage.conversations.add_member(args.conversation_id, user_id,
                                             int(clock.now() * 1000),
                                             settings.max_conversation_members)
        except ConversationFull as exc:
            raise UsageError(f"{exc} (MAX_CONVERSATION_MEMBERS)") from None
        print("added" if added else "already a member")
        return 0

    return _with_storage(settings, create if args.action == "create" else add_member)
