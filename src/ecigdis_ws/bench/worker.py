"""One load-generator process: its own uvloop event loop and its share of the clients.

The parent (runner.py, stages.py) sends commands over a pipe (worker_pool.py), each
carried out in order:
  ("connect",)                       open, authenticate and join every client
  ("groups", {group: joined})        how many members of each group joined, anywhere
  ("send", phase, rate, duration_s)  send message:send at `rate`/s from random members
  ("collect", phase)                 report everything recorded for that phase, forget it
  ("hello", phase)                   reconnect: members 0 and 1 of each conversation send one
  ("arm", phase)                     reconnect: clients that drop from now on come back
                                     (reconnect.py); member 0 then sends in `phase`
  ("await_back",)                    reconnect: wait until every armed client is back
  ("close",)                         close every connection and exit
and the worker answers each with one reply, plus a ("progress", …) line of counters
every PROGRESS_INTERVAL_S. Replies carry raw samples (latencies in ms as arrays of
doubles), counters and per-message receipt counts; the parent merges them.
"""

from __future__ import annotations

import asyncio
import collections
import random
import resource
import threading
import time
import traceback
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import uvloop

from ecigdis_ws.bench.changes import KIND_NAMES, ChangeOptions, ChangeSender, unacked_changes
from ecigdis_ws.bench.client import ClientRecorder, ConnectFailed, WireClient
from ecigdis_ws.bench.plan import ReconnectPolicy
from ecigdis_ws.bench.reconnect import ClientState, ReconnectDriver
from ecigdis_ws.bench.recorder import PhaseRecord, PhaseRecorder
from ecigdis_ws.bench.wire import reply_code

PROGRESS_INTERVAL_S = 0.25
# The sender wakes at most this often (libuv timers have 1 ms resolution).
SEND_TICK_S = 0.002
# After closing every connection, time for the close frames to leave before exiting.
CLOSE_GRACE_S = 0.5
# Message keys are worker * KEY_STRIDE + sequence: unique over the run and all workers.
KEY_STRIDE = 10**9


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    ws_url: str  # the first of ws_urls (where the reconnect scenario comes back)
    # (client index, auth token, group, conversation, index in ws_urls, idle: never sends)
    clients: list[tuple[int, str, int, int, int, bool]]
    concurrency: int
    connect_timeout_s: float
    run_id: str
    user_base: int = 0  # client i is user user_base + i
    group_size: int = 1
    reconnect: ReconnectPolicy | None = None  # the reconnect scenario's clients come back
    ws_urls: tuple[str, ...] = ()  # the nodes (empty: ws_url alone)
    # ticks that edit or delete instead of sending (changes.py)
    changes: ChangeOptions = field(default_factory=ChangeOptions)

    def url_of(self, node: int) -> str:
        return self.ws_urls[node] if self.ws_urls else self.ws_url


class Worker:
    """Carries out the parent's commands; its clients report to its PhaseRecorder."""

    def __init__(self, plan: WorkerPlan, conn: Connection) -> None:
        self.plan = plan
        self.conn = conn
        self.run_id = plan.run_id.encode()
        self.recorder = PhaseRecorder(plan.run_id)
        if plan.changes.active:
            self.recorder.changer = ChangeSender(plan.changes, self.recorder.change_totals)
        self.clients: list[WireClient] = []
        self.idle: list[WireClient] = []  # joined clients that never send
        self.sequence = plan.index * KEY_STRIDE
        self.connected = 0
        self.joined = 0
        self.connect_failures: collections.Counter[str] = collections.Counter()
        self.join_failures: collections.Counter[str] = collections.Counter()
        # Progress of the phases already reported, summed (shown as phase -1).
        self.reported = [0, 0, 0, 0, 0]
        self.commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.driver = None if plan.reconnect is None else ReconnectDriver(
            plan.ws_url, plan.reconnect, plan.connect_timeout_s, self.recorder, self.clients,
            self._next_key)

    # -- commands -----------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # A thread reads the pipe: the event loop's add_reader would make the pipe
        # non-blocking, and a large reply would then fail half-written.
        threading.Thread(target=self._read_commands, args=(loop,), daemon=True).start()
        reporter = asyncio.create_task(self._report_progress())
        self._reply("ready", {})
        try:
            while True:
                command = await self.commands.get()
                name = command[0]
                if name == "connect":
                    self._reply("connected", await self._connect_all())
                elif name == "groups":
                    self.recorder.joined_per_group = dict(command[1])
                    self._reply("groups", {})
                elif name == "send":
                    _, phase, rate, duration_s = command
                    self._reply("sent", await self._send(phase, rate, duration_s))
                elif name == "collect":
                    self._reply("phase", self._collect(command[1]))
                elif name in ("hello", "arm", "await_back"):
                    await self._reconnect_command(command)
                elif name == "close":
                    for client in self.clients:
                        client.close()
                    await asyncio.sleep(CLOSE_GRACE_S)  # let the goodbyes go out
                    self._reply("closed", self._totals())
                    return
        finally:
            reporter.cancel()

    async def _reconnect_command(self, command: tuple[Any, ...]) -> None:
        driver = self.driver
        assert driver is not None, "a reconnect command to a worker of another scenario"
        if command[0] == "hello":
            self._reply("hello", {"sent": driver.hello(command[1])})
        elif command[0] == "arm":
            self._reply("armed", {"armed": driver.arm(command[1])})
        else:
            self._reply("back", await driver.wait_back())

    def _next_key(self) -> int:
        self.sequence += 1
        return self.sequence

    def _read_commands(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                command = self.conn.recv()
            except (EOFError, OSError):  # the parent is gone: stop
                command = ("close",)
                if self.driver is not None:  # no more waiting for clients to come back
                    loop.call_soon_threadsafe(self.driver.all_back.set)
            try:
                loop.call_soon_threadsafe(self.commands.put_nowait, command)
            except RuntimeError:  # the loop is closed
                return
            if command[0] == "close":
                return

    def _reply(self, kind: str, payload: dict[str, Any]) -> None:
        self.conn.send((kind, self.plan.index, payload))

    def _counters(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "joined": self.joined,
            "connect_failed": sum(self.connect_failures.values()),
            "errors": (sum(self.connect_failures.values()) + sum(self.join_failures.values())
                       + self.recorder.unanswered_errors + self.recorder.disconnects
                       + sum(sum(r.failed.values()) + r.send_errors
                             for r in self.recorder.phases.values())),
            "rate_limited": self.recorder.error_events.get("RATE_LIMITED", 0),
            "cpu_s": time.process_time(),
            "changes": self.recorder.change_totals.progress(),
            "phases": {
                -1: tuple(self.reported),
                **{phase: self._progress(r) for phase, r in self.recorder.phases.items()},
            },
        }

    @staticmethod
    def _progress(r: PhaseRecord) -> tuple[int, int, int, int, int]:
        return (r.sent, r.acked, sum(r.failed.values()) + r.send_errors, r.expected,
                r.received)

    async def _report_progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            self._reply("progress", self._counters())

    async def _connect_all(self) -> dict[str, Any]:
        limit = asyncio.Semaphore(self.plan.concurrency)
        durations = array("d")
        started = time.monotonic_ns()
        cpu_started = time.process_time()

        async def connect(index: int, token: str, group: int, conversation: int, node: int,
                          idle: bool) -> None:
            async with limit:
                begun = time.monotonic_ns()
                state: ClientState | None = None
                recorder: ClientRecorder = self.recorder
                if self.driver is not None:
                    state = ClientState(index, str(self.plan.user_base + index), token, group,
                                        conversation, index % self.plan.group_size)
                    recorder = self.driver.track(state)
                client = WireClient(index, token, group, conversation, recorder)
                self.clients.append(client)
                try:
                    async with asyncio.timeout(self.plan.connect_timeout_s):
                        await client.open(self.plan.url_of(node))
                        self.connected += 1
                        reply = await client.call("conversation:join",
                                                  {"conversationId": conversation})
                except ConnectFailed as exc:
                    self.connect_failures[exc.reason] += 1
                    client.close()
                    return
                except TimeoutError:
                    self.connect_failures["timeout"] += 1
                    client.close()
                    return
                code = reply_code(reply)
                if code is not None:
                    self.join_failures[code] += 1
                    return
                self.joined += 1
                if idle:  # joined, counted in its group, never picked to send
                    self.idle.append(client)
                else:
                    self.recorder.senders.append(client)
                if self.driver is not None and state is not None:
                    self.driver.joined(state, client)
                durations.append((time.monotonic_ns() - begun) / 1e6)

        await asyncio.gather(*(connect(*spec) for spec in self.plan.clients))
        return {
            "started_ns": started,
            "ended_ns": time.monotonic_ns(),
            "cpu_s": time.process_time() - cpu_started,
            "connected": self.connected,
            "joined": self.joined,
            "joined_groups": dict(collections.Counter(
                c.group for c in [*self.recorder.senders, *self.idle])),
            "connect_failures": dict(self.connect_failures),
            "join_failures": dict(self.join_failures),
            "durations_ms": durations,
        }

    async def _send(self, phase: int, rate: float, duration_s: float) -> dict[str, Any]:
        record = self.recorder.phase(phase)
        record.target_rate = rate
        record.cpu_started_s = time.process_time()
        total = round(rate * duration_s)
        pick = random.Random().choice
        run_id = self.run_id
        changer = self.recorder.changer  # None: every tick sends (the default)
        sent = 0
        started = time.monotonic()
        record.send_started_ns = time.monotonic_ns()
        while sent < total and self.recorder.senders:
            now = time.monotonic()
            due = min(total, int((now - started) * rate) + 1)
            while sent < due and self.recorder.senders:
                sent += 1
                if changer is not None and changer.tick(record.changes, phase, now):
                    continue  # this tick edited or deleted one of its own messages
                client = pick(self.recorder.senders)
                self.sequence += 1
                try:
                    client.send_message(phase, self.sequence, run_id)
                    record.sent += 1
                    if changer is not None:
                        changer.own.sending(self.sequence, client)
                except ConnectionResetError:
                    record.send_errors += 1
            # Sleep until the next message is due, but at least one tick: at high
            # rates every wake-up sends what fell due meanwhile, instead of paying a
            # timer and a task switch per message.
            await asyncio.sleep(max(started + sent / rate - time.monotonic(), SEND_TICK_S))
        record.send_ended_ns = time.monotonic_ns()
        record.cpu_ended_s = time.process_time()
        return {"sent": record.sent, "started_ns": record.send_started_ns,
                "ended_ns": record.send_ended_ns,
                "changes_sent": sum(kind.sent for kind in record.changes.values())}

    def _collect(self, phase: int) -> dict[str, Any]:
        record = self.recorder.phases.pop(phase, PhaseRecord())
        self.recorder.collected.add(phase)
        for index, count in enumerate(self._progress(record)):
            self.reported[index] += count
        unacked = 0
        change_unacked: dict[str, int] = {}
        for client in self.clients:
            stale = [ack for ack, entry in client.pending.items() if entry[0] == phase]
            for ack in stale:
                del client.pending[ack]
            unacked += len(stale)
            for name, count in unacked_changes(client.changes, phase).items():
                change_unacked[name] = change_unacked.get(name, 0) + count
        return {
            "sent": record.sent,
            "acked": record.acked,
            "failed": dict(record.failed),
            "send_errors": record.send_errors,
            "unacked": unacked,
            "expected": record.expected,
            "received": record.received,
            "acked_keys": record.acked_keys,
            "acked_groups": record.acked_groups,
            "receipts": record.receipts,
            "latencies_ms": record.latencies,
            "ack_latencies_ms": record.ack_latencies,
            "target_rate": record.target_rate,
            "send_started_ns": record.send_started_ns,
            "send_ended_ns": record.send_ended_ns,
            "cpu_s": record.cpu_ended_s - record.cpu_started_s,
            "changes": {KIND_NAMES[kind]: r.reply() for kind, r in record.changes.items()},
            "change_unacked": change_unacked,
            "change_receipts": self.recorder.change_receipts.take(),
        }

    def _totals(self) -> dict[str, Any]:
        return {
            "connect_failures": dict(self.connect_failures),
            "join_failures": dict(self.join_failures),
            "error_events": dict(self.recorder.error_events),
            "unanswered_errors": self.recorder.unanswered_errors,
            "disconnects": self.recorder.disconnects,
            "events": dict(self.recorder.events),
            "foreign_messages": self.recorder.foreign_messages,
            "late_deliveries": self.recorder.late_deliveries,
            "writes_while_paused": sum(c.writes_while_paused for c in self.clients),
            "cpu_s": time.process_time(),
        }


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard one: one descriptor per client."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def worker_main(plan: WorkerPlan, conn: Connection) -> None:
    """Entry point of a worker process (multiprocessing, spawn)."""
    raise_open_files_limit()
    try:
        uvloop.run(Worker(plan, conn).run())
    except Exception:
        conn.send(("failed", plan.index, {"traceback": traceback.format_exc()}))
        raise
    finally:
        conn.close()
