"""The parent side of the reconnect scenario: the server is killed and restarted under
its clients, who all come back; how long that took and what they missed.

In three phases (numbered on from the run's others):
  before        members 0 and 1 of each conversation send one message, drained: every
                member has received one, so each has a `since` before the kill
  during_kill   --rate msg/s from random members for --warmup s, then --restart-cmd
                runs (`sh -c`) while the load goes on until every connection dropped
  after_return  every client reconnects (ReconnectPolicy: delay doubling from
                --reconnect-delay, jittered), authenticates and rejoins with `since`
                (reconnect.py); member 0 of each conversation sends one message as
                soon as it is back; drained
Missed: every message acknowledged `ok` to its sender, in any phase, that a member of
its conversation (one that had joined before the kill, the sender aside) never
received, live or replayed by `since`, by the end of the drain. A message whose ack
the kill cut off was never acknowledged: it is counted apart, not as missed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from typing import Any

from ecigdis_ws.bench.report import percentiles
from ecigdis_ws.bench.stages import Run

# The last characters of the restart command's output kept in the report.
RESTART_OUTPUT_CHARS = 2000
# Replies that do no network work come at once; this guards against a wedged worker.
REPLY_TIMEOUT_S = 120.0


async def run_restart(command: str, timeout_s: float) -> dict[str, Any]:
    """`sh -c command`, its output captured (the bench's stdout is the summary)."""
    started = time.monotonic_ns()
    process = await asyncio.create_subprocess_shell(
        command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    output = b""
    try:
        async with asyncio.timeout(timeout_s):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        output = f"(killed after {timeout_s:g} s)".encode()
    return {
        "command": command,
        "exit_code": process.returncode,
        "seconds": round((time.monotonic_ns() - started) / 1e9, 3),
        "output": output.decode(errors="replace")[-RESTART_OUTPUT_CHARS:],
        "started_ns": started,
    }


async def reconnect_storm(run: Run) -> dict[str, Any]:
    """Run the three phases; the `reconnect` figures of the report."""
    options, pool = run.options, run.pool
    policy = options.reconnect
    assert options.restart_cmd is not None  # BenchOptions.check says so
    hello, load, after = run.next_phase, run.next_phase + 1, run.next_phase + 2
    run.next_phase += 3
    run.progress.set_stage("hello")
    pool.send(("hello", hello))
    await run.drain([hello], sum(r["sent"] for r in await pool.gather("hello")))
    pool.send(("arm", after))
    armed = sum(r["armed"] for r in await pool.gather("armed"))
    rate = options.message_rate
    if rate > 0:
        pool.send(("send", load, rate / len(pool.pipes), options.warmup_s + policy.timeout_s))
    run.progress.set_stage("load before the kill", seconds=options.warmup_s)
    await pool.pump(options.warmup_s)
    run.progress.set_stage("killed: coming back")
    restart = asyncio.create_task(run_restart(options.restart_cmd, policy.timeout_s))
    pool.send(("await_back",))
    if rate > 0:
        await pool.gather("sent", timeout_s=options.warmup_s + policy.timeout_s
                          + REPLY_TIMEOUT_S)
    back = await pool.gather("back", timeout_s=policy.timeout_s + REPLY_TIMEOUT_S)
    restarted = await restart
    sent_after = sum(r["sent_after_return"] for r in back)
    await run.drain([after], sent_after)
    phases: dict[str, dict[str, Any]] = {}
    for name, phase in (("before", hello), ("during_kill", load), ("after_return", after)):
        pool.send(("collect", phase))
        phases[name] = run.merge(await pool.gather("phase"))
    # Sends and acks the kill cut off are what a kill does, not the server's errors:
    # they are reported in their phase, and left out of the run's error count.
    run.phase_reports = [p for p in run.phase_reports if p is not phases["during_kill"]]
    return figures(armed, back, restarted, phases, run)


def figures(armed: int, back: list[dict[str, Any]], restarted: dict[str, Any],
            phases: dict[str, dict[str, Any]], run: Run) -> dict[str, Any]:
    killed_ns = restarted.pop("started_ns")
    back_ns = [t for reply in back for t in reply["back_ns"]]
    returned = len(back_ns)
    failures: dict[str, int] = {}
    for reply in back:
        for reason, count in reply["failures"].items():
            failures[reason] = failures.get(reason, 0) + count
    before = phases["before"]["losses"] + phases["during_kill"]["losses"]
    after = phases["after_return"]["losses"]
    return {
        "restart": restarted,
        "policy": asdict(run.options.reconnect),
        "clients": armed,
        "dropped": sum(r["dropped"] for r in back),
        "back": returned,
        "not_back": armed - returned,
        "all_back_s": (round((max(back_ns) - killed_ns) / 1e9, 3)
                       if back_ns and returned == armed else None),
        "first_back_s": round((min(back_ns) - killed_ns) / 1e9, 3) if back_ns else None,
        # The restart command returns once the server runs (restart_server.py waits for
        # it to answer): what follows is the clients' back-off and the rejoin storm.
        "all_back_after_restart_s": (round((max(back_ns) - killed_ns) / 1e9
                                           - restarted["seconds"], 3)
                                     if back_ns and returned == armed
                                     and restarted["exit_code"] == 0 else None),
        "back_after_kill_ms": percentiles([(t - killed_ns) / 1e6 for t in back_ns]),
        "reconnect_ms": percentiles([ms for r in back for ms in r["reconnect_ms"]]),
        "attempts": percentiles([float(n) for r in back for n in r["attempts"]]),
        "attempt_failures": failures,
        "sent_after_return": sum(r["sent_after_return"] for r in back),
        "missed": before + after,
        "missed_acked_before_kill": before,
        "missed_acked_after_return": after,
        "unacked_at_kill": phases["during_kill"]["ack_timeouts"]
        + phases["during_kill"]["send_errors"],
        "repeated_deliveries": sum(r["duplicates"] for r in back),
        "phases": phases,
    }
