"""Kill the server whose pid is in PIDFILE and start COMMAND in its place: a
`--restart-cmd` for `ecigdis-ws bench --scenario reconnect` (compare.py and the
bench's tests use it).

  python benchmarks/restart_server.py PIDFILE [--signal KILL] [--log FILE] [--cwd DIR]
      [--env NAME=VALUE ...] [--wait-url URL] -- COMMAND [ARG ...]

1. Sends --signal (KILL: a crash, nothing flushed or said goodbye) to the pid in
   PIDFILE and waits until that process is gone (a zombie counts as gone: its
   sockets are closed, and the port is free, once it has exited).
2. Starts COMMAND in a session of its own (it outlives this script), in --cwd, with
   this environment plus each --env, its output appended to --log, and writes its
   pid to PIDFILE: whoever started the first server stops the one in PIDFILE.
3. With --wait-url, waits until that URL answers 200. Exit status 0 once the new
   server runs (and answers), 1 if the old one would not die or the new one did not
   come up within --timeout seconds, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

POLL_S = 0.02


def gone(pid: int) -> bool:
    """The process has exited (it may still be a zombie its parent has not reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="restart_server.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pidfile", type=Path)
    parser.add_argument("--signal", default="KILL", help="signal name, without SIG (KILL)")
    parser.add_argument("--log", type=Path, help="append the new server's output here")
    parser.add_argument("--cwd", type=Path)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--wait-url", help="wait until this answers 200")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("command", nargs="+", help="the server's command line, after --")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    try:
        number = signal.Signals[f"SIG{args.signal.upper()}"]
    except KeyError:
        print(f"restart_server.py: no signal {args.signal!r}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    for item in args.env:
        name, equals, value = item.partition("=")
        if not equals:
            print(f"restart_server.py: --env {item!r}: expected NAME=VALUE", file=sys.stderr)
            return 2
        env[name] = value
    deadline = time.monotonic() + args.timeout
    pid = int(args.pidfile.read_text().strip())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, number)
    while not gone(pid):
        if time.monotonic() > deadline:
            print(f"restart_server.py: {pid} still runs after SIG{args.signal}", file=sys.stderr)
            return 1
        time.sleep(POLL_S)
    killed = time.monotonic()
    with (args.log or Path(os.devnull)).open("ab") as output:
        process = subprocess.Popen(args.command, cwd=args.cwd, env=env, stdout=output,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    args.pidfile.write_text(f"{process.pid}\n")
    while args.wait_url and not answers(args.wait_url):
        if process.poll() is not None:
            print(f"restart_server.py: the new server exited ({process.returncode})",
                  file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            print(f"restart_server.py: {args.wait_url} did not answer", file=sys.stderr)
            return 1
        time.sleep(POLL_S)
    print(f"killed {pid} (SIG{args.signal}), started {process.pid}, up "
          f"{time.monotonic() - killed:.2f} s after the kill")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
