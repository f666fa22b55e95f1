"""One load-generator process: its own uvloop event loop and its share of the clients.

The parent (runner.py) sends commands over a pipe, each carried out in order:
  ("connect",)                       open, authenticate and join every client
  ("groups", {group: joined})        how many members of each group joined, anywhere
  ("send", phase, rate, duration_s)  send message:send at `rate`/s from random members
  ("collect", phase)                 report everything recorded for that phase, forget it
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

import orjson
import uvloop

from ecigdis_ws.bench.wire import ConnectFailed, WireClient, reply_code

PROGRESS_INTERVAL_S = 0.25
# The sender wakes at most this often (libuv timers have 1 ms resolution).
SEND_TICK_S = 0.002
# After closing every connection, time for the close frames to leave before exiting.
CLOSE_GRACE_S = 0.5
# Message keys are worker * KEY_STRIDE + sequence: unique over the run and all workers.
KEY_STRIDE = 10**9
# Error events that answer one of our own calls (already counted as that call's failure).
ANSWERED_EVENTS = frozenset({"message:send", "conversation:join"})


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    ws_url: str
    clients: list[tuple[int, str, int, int]]  # (client index, auth token, group, conversation)
    concurrency: int
    connect_timeout_s: float
    run_id: str


@dataclass
class PhaseRecord:
    sent: int = 0
    acked: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    send_errors: int = 0
    expected: int = 0
    received: int = 0
    acked_keys: array[int] = field(default_factory=lambda: array("q"))
    acked_groups: array[int] = field(default_factory=lambda: array("q"))
    receipts: dict[int, int] = field(default_factory=dict)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    ack_latencies: array[float] = field(default_factory=lambda: array("d"))
    target_rate: float = 0.0
    send_started_ns: int = 0
    send_ended_ns: int = 0
    cpu_started_s: float = 0.0
    cpu_ended_s: float = 0.0


class Worker:
    """Implements wire.Recorder: every client reports to it."""

    def __init__(self, plan: WorkerPlan, conn: Connection) -> None:
        self.plan = plan
        self.conn = conn
        self.prefix = (plan.run_id + ".").encode()
        self.id_marker = b'"messageId":"' + self.prefix
        self.run_id = plan.run_id.encode()
        self.clients: list[WireClient] = []
        self.senders: list[WireClient] = []
        self.joined_per_group: dict[int, int] = {}
        self.phases: dict[int, PhaseRecord] = {}
        self.sequence = plan.index * KEY_STRIDE
        self.connected = 0
        self.joined = 0
        self.connect_failures: collections.Counter[str] = collections.Counter()
        self.join_failures: collections.Counter[str] = collections.Counter()
        self.error_events: collections.Counter[str] = collections.Counter()
        self.unanswered_errors = 0  # error events that answer none of our calls
        self.disconnects = 0
        self.events: collections.Counter[str] = collections.Counter()
        self.foreign_messages = 0
        self.collected: set[int] = set()  # phases already reported
        self.late_deliveries = 0  # message:new of a phase after it was reported
        # Progress of the phases already reported, summed (shown as phase -1).
        self.reported = [0, 0, 0, 0, 0]
        self.commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    # -- Recorder -----------------------------------------------------------------------------

    def phase(self, phase: int) -> PhaseRecord:
        record = self.phases.get(phase)
        if record is None:
            record = self.phases[phase] = PhaseRecord()
        return record

    def message_new(self, data: bytes) -> None:
        now = time.monotonic_ns()
        fields = self._fields(data)
        if fields is None:
            self.foreign_messages += 1
            return
        key, phase, sent_ns = fields
        if phase in self.collected:
            self.late_deliveries += 1
            return
        record = self.phases.get(phase) or self.phase(phase)
        record.received += 1
        receipts = record.receipts
        receipts[key] = receipts.get(key, 0) + 1
        record.latencies.append((now - sent_ns) / 1e6)

    def _fields(self, data: bytes) -> tuple[int, int, int] | None:
        """(message key, phase, send time) of a bench message:new, else None.

        The hot path: both servers write compact JSON, so the two fields are found
        as bytes (our messageId and text hold only digits, '.', ':' and the run
        id); anything else is decoded in full."""
        at = data.find(self.id_marker)
        text_at = data.find(b'"text":"')
        if at >= 0 and text_at >= 0:
            at += len(self.id_marker)
            text_at += 8
            try:
                key = int(data[at:data.index(b'"', at)])
                phase, _, sent = data[text_at:data.index(b'"', text_at)].partition(b":")
                return key, int(phase), int(sent)
            except ValueError:
                pass
        packet = orjson.loads(data[2:])
        body = packet[1] if isinstance(packet, list) and len(packet) > 1 else None
        if not isinstance(body, dict):
            return None
        message_id, text = body.get("messageId"), body.get("text")
        if not (isinstance(message_id, str) and isinstance(text, str)
                and message_id.startswith(self.plan.run_id + ".")):
            return None
        phase_text, _, sent_text = text.partition(":")
        try:
            return int(message_id[len(self.prefix):]), int(phase_text), int(sent_text)
        except ValueError:
            return None

    def message_acked(self, entry: tuple[int, int, int, int], reply: Any) -> None:
        now = time.monotonic_ns()
        phase, key, group, sent_ns = entry
        record = self.phase(phase)
        record.ack_latencies.append((now - sent_ns) / 1e6)
        code = reply_code(reply)
        if code is not None:
            record.failed[code] += 1
            return
        record.acked += 1
        record.acked_keys.append(key)
        record.acked_groups.append(group)
        record.expected += max(0, self.joined_per_group.get(group, 0) - 1)

    def error_event(self, payload: Any) -> None:
        code = "UNKNOWN"
        event = None
        if isinstance(payload, dict):
            code = str(payload.get("code", "UNKNOWN"))
            event = payload.get("event")
        self.error_events[code] += 1
        if event not in ANSWERED_EVENTS:
            self.unanswered_errors += 1

    def other_event(self, data: bytes) -> None:
        end = data.find(b'"', 4)
        self.events[data[4:end].decode(errors="replace") if end > 4 else "?"] += 1

    def disconnected(self, client: WireClient) -> None:
        self.disconnects += 1
        if client in self.senders:
            self.senders.remove(client)

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
                    self.joined_per_group = dict(command[1])
                    self._reply("groups", {})
                elif name == "send":
                    _, phase, rate, duration_s = command
                    self._reply("sent", await self._send(phase, rate, duration_s))
                elif name == "collect":
                    self._reply("phase", self._collect(command[1]))
                elif name == "close":
                    for client in self.clients:
                        client.close()
                    await asyncio.sleep(CLOSE_GRACE_S)  # let the goodbyes go out
                    self._reply("closed", self._totals())
                    return
        finally:
            reporter.cancel()

    def _read_commands(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                command = self.conn.recv()
            except (EOFError, OSError):  # the parent is gone: stop
                command = ("close",)
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
                       + self.unanswered_errors + self.disconnects
                       + sum(sum(r.failed.values()) + r.send_errors
                             for r in self.phases.values())),
            "rate_limited": self.error_events.get("RATE_LIMITED", 0),
            "cpu_s": time.process_time(),
            "phases": {
                -1: tuple(self.reported),
                **{phase: self._progress(r) for phase, r in self.phases.items()},
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

        async def connect(index: int, token: str, group: int, conversation: int) -> None:
            async with limit:
                begun = time.monotonic_ns()
                client = WireClient(index, token, group, conversation, self)
                self.clients.append(client)
                try:
                    async with asyncio.timeout(self.plan.connect_timeout_s):
                        await client.open(self.plan.ws_url)
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
                self.senders.append(client)
                durations.append((time.monotonic_ns() - begun) / 1e6)

        await asyncio.gather(*(connect(*spec) for spec in self.plan.clients))
        return {
            "started_ns": started,
            "ended_ns": time.monotonic_ns(),
            "cpu_s": time.process_time() - cpu_started,
            "connected": self.connected,
            "joined": self.joined,
            "joined_groups": dict(collections.Counter(c.group for c in self.senders)),
            "connect_failures": dict(self.connect_failures),
            "join_failures": dict(self.join_failures),
            "durations_ms": durations,
        }

    async def _send(self, phase: int, rate: float, duration_s: float) -> dict[str, Any]:
        record = self.phase(phase)
        record.target_rate = rate
        record.cpu_started_s = time.process_time()
        total = round(rate * duration_s)
        pick = random.Random().choice
        run_id = self.run_id
        sent = 0
        started = time.monotonic()
        record.send_started_ns = time.monotonic_ns()
        while sent < total and self.senders:
            due = min(total, int((time.monotonic() - started) * rate) + 1)
            while sent < due and self.senders:
                client = pick(self.senders)
                self.sequence += 1
                try:
                    client.send_message(phase, self.sequence, run_id)
                    record.sent += 1
                except ConnectionResetError:
                    record.send_errors += 1
                sent += 1
            # Sleep until the next message is due, but at least one tick: at high
            # rates every wake-up sends what fell due meanwhile, instead of paying a
            # timer and a task switch per message.
            await asyncio.sleep(max(started + sent / rate - time.monotonic(), SEND_TICK_S))
        record.send_ended_ns = time.monotonic_ns()
        record.cpu_ended_s = time.process_time()
        return {"sent": record.sent, "started_ns": record.send_started_ns,
                "ended_ns": record.send_ended_ns}

    def _collect(self, phase: int) -> dict[str, Any]:
        record = self.phases.pop(phase, PhaseRecord())
        self.collected.add(phase)
        for index, count in enumerate(self._progress(record)):
            self.reported[index] += count
        unacked = 0
        for client in self.clients:
            stale = [ack for ack, entry in client.pending.items() if entry[0] == phase]
            for ack in stale:
                del client.pending[ack]
            unacked += len(stale)
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
        }

    def _totals(self) -> dict[str, Any]:
        return {
            "connect_failures": dict(self.connect_failures),
            "join_failures": dict(self.join_failures),
            "error_events": dict(self.error_events),
            "unanswered_errors": self.unanswered_errors,
            "disconnects": self.disconnects,
            "events": dict(self.events),
            "foreign_messages": self.foreign_messages,
            "late_deliveries": self.late_deliveries,
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
