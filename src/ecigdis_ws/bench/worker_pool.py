"""The worker processes of a run and the pipes the parent commands them over."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import threading
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from ecigdis_ws.bench.plan import BenchError
from ecigdis_ws.bench.progress import Progress
from ecigdis_ws.bench.worker import WorkerPlan, worker_main

# A worker process that has not said "ready" in this long failed to start.
WORKER_START_TIMEOUT_S = 60.0
# A reply to a command that does no network work (groups, collect, close) comes at once;
# this only guards against a wedged worker.
COMMAND_TIMEOUT_S = 120.0


class WorkerPool:
    """Worker processes, each with a pipe; replies are read by one thread per pipe."""

    def __init__(self, plans: list[WorkerPlan], progress: Progress) -> None:
        self.plans = plans
        self.progress = progress
        self.processes: list[BaseProcess] = []
        self.pipes: list[Connection] = []
        self.replies: asyncio.Queue[tuple[str, int, dict[str, Any]]] = asyncio.Queue()
        self.closed: set[int] = set()  # workers that said "closed" (their pipe then ends)
        self.latest: dict[int, dict[str, Any]] = {}
        self.stash: list[tuple[str, int, dict[str, Any]]] = []

    async def __aenter__(self) -> WorkerPool:
        context = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        for plan in self.plans:
            parent, child = context.Pipe()
            process = context.Process(target=worker_main, args=(plan, child),
                                      name=f"bench-worker-{plan.index}", daemon=True)
            process.start()
            child.close()
            self.processes.append(process)
            self.pipes.append(parent)
            threading.Thread(target=self._read, args=(plan.index, parent, loop),
                             daemon=True).start()
        await self.gather("ready", timeout_s=WORKER_START_TIMEOUT_S)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("close",))
        deadline = time.monotonic() + 30
        for process in self.processes:
            await asyncio.to_thread(process.join, max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        for pipe in self.pipes:
            pipe.close()

    def _read(self, index: int, pipe: Connection, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                reply = pipe.recv()
            except (EOFError, OSError) as exc:
                reply = ("ended", index, {"why": repr(exc)})
            try:
                loop.call_soon_threadsafe(self.replies.put_nowait, reply)
            except RuntimeError:  # the loop is closed: the run is over
                return
            if reply[0] == "ended":
                return

    def send(self, command: tuple[Any, ...]) -> None:
        for pipe in self.pipes:
            pipe.send(command)

    def totals(self) -> dict[str, Any]:
        totals = {"connected": 0, "joined": 0, "connect_failed": 0, "errors": 0,
                  "rate_limited": 0, "sent": 0, "acked": 0, "received": 0}
        for counters in self.latest.values():
            for key in ("connected", "joined", "connect_failed", "errors", "rate_limited"):
                totals[key] += counters[key]
            for sent, acked, _failed, _expected, received in counters["phases"].values():
                totals["sent"] += sent
                totals["acked"] += acked
                totals["received"] += received
        return totals

    def phase_state(self, phases: Iterable[int]) -> tuple[int, int, int, int]:
        """(sent, answered, expected, received) of these phases over every worker."""
        sent = answered = expected = received = 0
        wanted = set(phases)
        for counters in self.latest.values():
            for phase, (s, a, f, e, r) in counters["phases"].items():
                if phase in wanted:
                    sent += s
                    answered += a + f
                    expected += e
                    received += r
        return sent, answered, expected, received

    def change_state(self) -> tuple[int, int, int, int]:
        """(sent, answered, expected, heard) of the edits and deletions over the run,
        over every worker (changes.py's ChangeTotals)."""
        totals = [0, 0, 0, 0]
        for counters in self.latest.values():
            for index, value in enumerate(counters.get("changes", (0, 0, 0, 0))):
                totals[index] += value
        return totals[0], totals[1], totals[2], totals[3]

    def _handle(self, reply: tuple[str, int, dict[str, Any]]) -> tuple[
            str, int, dict[str, Any]]:
        kind, index, payload = reply
        if kind == "ended" and index not in self.closed:
            process = self.processes[index]
            process.join(1)  # to say how it ended, when it did
            raise BenchError(f"worker {index} ended unexpectedly ({payload['why']}, exit "
                             f"code {process.exitcode})")
        if kind == "failed":
            raise BenchError(f"worker {index} failed:\n{payload['traceback']}")
        if kind == "closed":
            self.closed.add(index)
        if kind == "progress":
            self.latest[index] = payload
            self.progress.show(self.totals())
        return reply

    async def gather(self, kind: str, timeout_s: float = COMMAND_TIMEOUT_S) -> list[
            dict[str, Any]]:
        """One `kind` reply from every worker, in worker order."""
        got: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while len(got) < len(self.pipes):
            if self.stash:
                reply = self.stash.pop(0)
            else:
                try:
                    raw = await asyncio.wait_for(self.replies.get(),
                                                 max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    raise BenchError(f"no {kind!r} from every worker in {timeout_s:.0f} s"
                                     ) from None
                reply = self._handle(raw)
            reply_kind, index, payload = reply
            if reply_kind == kind:
                got[index] = payload
            elif reply_kind not in ("progress", "ended"):
                raise BenchError(f"worker {index} answered {reply_kind!r}, expected {kind!r}")
        return [got[i] for i in range(len(self.pipes))]

    async def pump(self, seconds: float) -> None:
        """Keep reading progress for `seconds`; other replies wait for the next gather."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(self.replies.get(), left)
            except TimeoutError:
                return
            reply = self._handle(raw)
            if reply[0] not in ("progress", "ended"):
                self.stash.append(reply)
