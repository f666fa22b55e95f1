"""Group commit: writes that arrive while a commit is running share the next one.

A database commits one transaction at a time about as fast as it commits a
hundred rows, so under load a single writer loop takes everything queued, writes
it in one transaction and answers each caller only after that commit. When
writes are rare a batch holds one item and costs no more than before; the busier
it gets, the bigger the batches, so throughput follows the load while every
caller still waits for its own row's commit.

A caller may give a deadline (a value of the injected clock's `monotonic()`): once it passes, the
caller is answered TimeoutError, whether its item still waits (it is then never
written) or is in the transaction being written (its row may still commit). One
timer, armed for the earliest deadline of what is pending, keeps every deadline:
an `asyncio.timeout` per caller cost a timer, a task lookup and a `getpid()` per
message under chat load (budget.py: 5-7 % of the server's CPU).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from ecigdis_ws.clock import Clock, SystemClock, Timer

Item = TypeVar("Item")
Result = TypeVar("Result")

# Rows per transaction: big enough to amortise a commit, small enough that one
# statement stays far below SQLite's 32,766 bound parameters and MariaDB's
# max_allowed_packet with messages of MAX_MESSAGE_LENGTH.
MAX_BATCH = 256


class GroupCommit(Generic[Item, Result]):
    """Queues items; one task writes them in batches through `write_batch`.

    `write_batch` returns one result (or exception) per item, in order; an
    exception it raises fails the whole batch.
    """

    def __init__(
        self,
        write_batch: Callable[[Sequence[Item]], Awaitable[Sequence[Result | Exception]]],
        clock: Clock | None = None,
    ) -> None:
        self._write_batch = write_batch
        self._clock = clock or SystemClock()
        self._queue: list[tuple[Item, asyncio.Future[Result], float | None]] = []
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing: list[tuple[Item, asyncio.Future[Result], float | None]] = []
        self._expiry: Timer | None = None
        self._expiry_due = 0.0

    async def submit(self, item: Item, deadline: float | None = None) -> Result:
        """`item`'s result once its batch committed; TimeoutError once `deadline`
        (the clock's monotonic()) passed first."""
        loop = self._loop
        if loop is None:  # (looked up once: each lookup is a getpid() system call)
            loop = self._loop = asyncio.get_running_loop()
            self._worker = loop.create_task(self._run(), name="group-commit")
        if deadline is not None:
            if deadline <= self._clock.monotonic():
                raise TimeoutError
            if self._expiry is None or deadline < self._expiry_due:
                self._arm(deadline)
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.append((item, future, deadline))
        self._wakeup.set()
        return await future

    def _arm(self, deadline: float) -> None:
        # (Only when the earliest deadline moves: deadlines that come later than the
        # one armed, as a steady stream of sends' do, arm nothing.)
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry_due = deadline
        self._expiry = self._clock.call_later(deadline - self._clock.monotonic(), self._expire)

    def _expire(self) -> None:
        """Answer TimeoutError to every caller whose deadline passed; re-arm for the
        earliest one still pending."""
        self._expiry = None
        now = self._clock.monotonic()
        earliest: float | None = None
        for _, future, deadline in (*self._writing, *self._queue):
            if deadline is None or future.done():
                continue
            if deadline <= now:
                future.set_exception(TimeoutError())
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None and self._loop is not None:
            self._arm(earliest)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._take()
                if batch:
                    await self._commit(batch)

    def _take(self) -> list[tuple[Item, asyncio.Future[Result], float | None]]:
        taken, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        # A caller that gave up (its deadline passed) before the write began was
        # told it failed; its item is not written behind its back.
        return [pending for pending in taken if not pending[1].done()]

    async def _commit(self, batch: list[tuple[Item, asyncio.Future[Result], float | None]]) -> None:
        self._writing = batch
        try:
            results = await self._write_batch([item for item, _, _ in batch])
        except Exception as exc:
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._writing = []
        for (_, future, _), result in zip(batch, results, strict=True):
            if future.done():
                continue  # its caller gave up meanwhile; the row is stored all the same
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    @property
    def writing(self) -> int:
        """Items in the batch being written now (its transaction has begun)."""
        return len(self._writing)

    async def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
            self._loop = None
        for _, future, _ in [*self._writing, *self._queue]:
            if not future.done():
                future.set_exception(RuntimeError("storage closed"))
        self._queue.clear()
