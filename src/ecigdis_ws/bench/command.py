"""`ecigdis-ws bench URL --scenario …`: the command line of the load generator."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from typing import Any

from ecigdis_ws.bench.changes import add_change_arguments, change_options_from
from ecigdis_ws.bench.plan import (
    DEFAULT_CONVERSATION_BASE,
    DEFAULT_USER_BASE,
    PLACEMENTS,
    SCENARIOS,
    TARGETS,
    BenchOptions,
    RampOptions,
    ReconnectPolicy,
)
from ecigdis_ws.settings import Settings

DESCRIPTION = """\
Connect many authenticated clients to a chat server over websocket and run a scenario:
  chat       N clients (--clients, 5000) in conversations of K (--group, 5); messages at
             --rate msg/s in total from random members for --duration s after --warmup
  broadcast  one conversation of N (default 1000); messages at --rate from random members
  connect    N clients connect, authenticate and join, --concurrency at a time
  ramp       chat load at rising rates (--start, --step or --factor, --step-duration)
             until p99 > --p99-bound-ms or anything is lost, then from the last step
             held up by --fine-factor (1.1), after --rest s (5) idle, until a step
             fails; reports the highest rate held
  reconnect  N clients joined; --rate msg/s (100) for --warmup s, then --restart-cmd
             kills and restarts the server; every client reconnects (jittered back-off),
             rejoins with `since`, and one member of each conversation sends at once;
             reports the time until all are back and the messages missed (must be 0)
Prints a summary (and --json FILE: every figure with the parameters). Exit status 0 when
nothing was lost and nothing failed (ramp: when at least one step held), else 1.

--target ecigdis (default) signs tokens with the JWT_SECRET of this machine's settings
(or --secret) and needs the conversations in the server's database: --setup creates them
there (DATABASE_URL, DB_TABLE_PREFIX), once; later runs reuse them. --target node talks
to the Node.js reference peer (the token is the user id; no membership).
The server under test should run with RATE_LIMIT_MESSAGES=0 and RATE_LIMIT_EVENTS=0."""


def add_bench_parser(commands: Any) -> None:
    bench = commands.add_parser(
        "bench", help="load-test a chat server (this one or the Node.js peer)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("url", help="the server's base URL, e.g. http://127.0.0.1:8080; "
                       "several, separated by commas: nodes of one cluster, the clients "
                       "spread over them by --placement")
    bench.add_argument("--placement", choices=PLACEMENTS, default="conversation",
                       help="with several URLs: conversation (every member of conversation "
                            "k on URL k %% n) or member (member j of each on URL j %% n)")
    bench.add_argument("--idle-clients", type=int, default=0,
                       help="chat: this many more clients in conversations of their own, "
                            "connected, authenticated and joined, that never send")
    bench.add_argument("--idle-url", help="where the idle clients connect (default: placed "
                                          "as the others)")
    bench.add_argument("--scenario", choices=SCENARIOS, default="chat")
    bench.add_argument("--target", choices=TARGETS, default="ecigdis")
    bench.add_argument("--clients", type=int, help="connections (default per scenario)")
    bench.add_argument("--group", type=int,
                       help="members per conversation (default 5; broadcast: all clients)")
    bench.add_argument("--rate", type=float, help="messages per second in total")
    bench.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    bench.add_argument("--warmup", type=float, default=2.0, help="seconds sent, not measured")
    bench.add_argument("--drain", type=float, default=5.0,
                       help="seconds to wait for late deliveries; missing after it: lost")
    bench.add_argument("--settle", type=float, default=2.0,
                       help="idle seconds after connecting, before memory is read")
    bench.add_argument("--concurrency", type=int, default=200,
                       help="connections being opened at once")
    bench.add_argument("--connect-timeout", type=float, default=30.0)
    bench.add_argument("--processes", type=int,
                       help="worker processes (default: one per 5000 clients, up to nproc)")
    bench.add_argument("--user-base", type=int, default=DEFAULT_USER_BASE,
                       help="client i is user BASE+i")
    bench.add_argument("--conversation-base", type=int, default=DEFAULT_CONVERSATION_BASE)
    bench.add_argument("--secret", help="JWT secret (default: JWT_SECRET of the settings)")
    bench.add_argument("--token-ttl", type=int, default=6 * 3600,
                       help="seconds the minted tokens stay valid (default 6 h)")
    bench.add_argument("--setup", action="store_true",
                       help="create the conversations in the settings' database first")
    bench.add_argument("--server-pid", type=int,
                       help="read the server's memory from /proc/PID (servers with no "
                            "/metrics, like the Node peer)")
    bench.add_argument("--json", metavar="FILE", help="write every figure here")
    ramp = bench.add_argument_group("ramp")
    ramp.add_argument("--start", type=float, default=RampOptions.start)
    ramp.add_argument("--step", type=float, default=RampOptions.step)
    ramp.add_argument("--factor", type=float, help="multiply the rate per step instead")
    ramp.add_argument("--fine-factor", type=float, default=RampOptions.fine_factor,
                      help="after the first failing step, climb again from the last one "
                           "held by this factor until one fails (default 1.1; 0: none)")
    ramp.add_argument("--rest", type=float, default=RampOptions.rest_s,
                      help="idle seconds after a failed step before the next (default 5): "
                           "the server catches up on what the failure left")
    ramp.add_argument("--step-duration", type=float, default=RampOptions.step_duration_s)
    ramp.add_argument("--p99-bound-ms", type=float, default=RampOptions.p99_bound_ms)
    ramp.add_argument("--max-rate", type=float, default=RampOptions.max_rate)
    add_change_arguments(bench.add_argument_group("edits and deletions (chat, broadcast)"))
    storm = bench.add_argument_group("reconnect")
    storm.add_argument("--restart-cmd", metavar="CMD",
                       help="shell command that kills the server and starts it again "
                            "(e.g. benchmarks/restart_server.py …); run once, timed")
    storm.add_argument("--reconnect-delay", type=float, default=ReconnectPolicy.delay_s,
                       help="seconds before a client's first attempt; doubles per attempt")
    storm.add_argument("--reconnect-delay-max", type=float,
                       default=ReconnectPolicy.delay_max_s)
    storm.add_argument("--reconnect-jitter", type=float, default=ReconnectPolicy.jitter,
                       help="each delay varies by up to ± this share of itself (0.5)")
    storm.add_argument("--reconnect-timeout", type=float, default=ReconnectPolicy.timeout_s,
                       help="seconds after the kill a client may take to be back")
    storm.add_argument("--no-since", dest="since", action="store_false",
                       help="rejoin without `since`, as a client with no resync would")
    shown = bench.add_mutually_exclusive_group()
    shown.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="always show progress on stderr")
    shown.add_argument("--no-progress", dest="progress", action="store_false")


def options_from(args: argparse.Namespace) -> BenchOptions:
    return BenchOptions(
        url=args.url,
        placement=args.placement,
        idle_clients=args.idle_clients,
        idle_url=args.idle_url,
        scenario=args.scenario,
        target=args.target,
        clients=args.clients,
        group=args.group,
        rate=args.rate,
        duration_s=args.duration,
        warmup_s=args.warmup,
        drain_s=args.drain,
        settle_s=args.settle,
        concurrency=args.concurrency,
        connect_timeout_s=args.connect_timeout,
        processes=args.processes,
        user_base=args.user_base,
        conversation_base=args.conversation_base,
        server_pid=args.server_pid,
        token_ttl_s=args.token_ttl,
        ramp=RampOptions(start=args.start, step=args.step, factor=args.factor,
                         step_duration_s=args.step_duration,
                         p99_bound_ms=args.p99_bound_ms, max_rate=args.max_rate,
                         fine_factor=args.fine_factor, rest_s=args.rest),
        progress=args.progress,
        restart_cmd=args.restart_cmd,
        reconnect=ReconnectPolicy(delay_s=args.reconnect_delay,
                                  delay_max_s=args.reconnect_delay_max,
                                  jitter=args.reconnect_jitter, since=args.since,
                                  timeout_s=args.reconnect_timeout),
        changes=change_options_from(args),
    )


def bench_command(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: the workers' modules (uvloop, multiprocessing) only load for a bench.
    from ecigdis_ws.bench.database import setup_conversations
    from ecigdis_ws.bench.plan import BenchError
    from ecigdis_ws.bench.report import rate_limit_warning, summary_lines, write_json
    from ecigdis_ws.bench.runner import run_bench

    options = options_from(args)
    problems = options.check()
    if args.setup and options.target == "node":
        problems.append("--setup is for --target ecigdis (the Node peer keeps no conversations)")
    if problems:
        print("ecigdis-ws bench: " + "; ".join(problems), file=sys.stderr)
        return 2
    if args.secret:
        settings = dataclasses.replace(settings, jwt_secret=args.secret)

    async def run() -> dict[str, Any]:
        if args.setup:
            done = await setup_conversations(options, settings)
            print(f"setup: {done.conversations} conversations ({done.created} created, "
                  f"{done.members_added} memberships added) in {done.seconds} s",
                  file=sys.stderr)
        return await run_bench(options, settings)

    try:
        report = asyncio.run(run())
    except BenchError as exc:
        print(f"ecigdis-ws bench: {exc}", file=sys.stderr)
        return 1
    for line in summary_lines(report):
        print(line)
    if args.json:
        write_json(args.json, report)
    for line in rate_limit_warning(report):
        print(line, file=sys.stderr)
    return 0 if report["ok"] else 1
