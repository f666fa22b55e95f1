"""GroupCommit's one deadline timer (storage/group_commit.py) on a ManualClock: no
database and no real time, only the queue, the writer and the clock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ecigdis_ws.clock import ManualClock
from ecigdis_ws.storage.group_commit import GroupCommit
from tests.support import wait_until


class HeldWriter:
    """A write_batch that waits until the test lets it finish."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.batches: list[list[str]] = []

    async def __call__(self, items: Sequence[str]) -> Sequence[str | Exception]:
        self.batches.append(list(items))
        await self.release.wait()
        return [item.upper() for item in items]


async def test_one_timer_answers_each_deadline_in_turn_and_rearms_for_the_next() -> None:
    clock, writer = ManualClock(), HeldWriter()
    commit: GroupCommit[str, str] = GroupCommit(writer, clock)
    now = clock.monotonic()
    later = asyncio.ensure_future(commit.submit("later", now + 2))
    sooner = asyncio.ensure_future(commit.submit("sooner", now + 1))
    endless = asyncio.ensure_future(commit.submit("endless"))
    await asyncio.sleep(0)
    assert clock.pending == 1  # the earlier deadline replaced the later one's timer

    clock.advance(1)
    await asyncio.sleep(0)
    assert sooner.done() and isinstance(sooner.exception(), TimeoutError)
    assert not later.done() and clock.pending == 1  # re-armed for the next deadline

    clock.advance(1)
    await asyncio.sleep(0)
    assert isinstance(later.exception(), TimeoutError)
    writer.release.set()
    assert await endless == "ENDLESS"  # no deadline: answered by its commit alone
    await commit.close()


async def test_an_item_whose_caller_timed_out_while_queued_is_never_written() -> None:
    clock, writer = ManualClock(), HeldWriter()
    commit: GroupCommit[str, str] = GroupCommit(writer, clock)
    first = asyncio.ensure_future(commit.submit("first"))
    await wait_until(lambda: commit.writing == 1)  # being written, held
    queued = asyncio.ensure_future(commit.submit("queued", clock.monotonic() + 0.5))
    await asyncio.sleep(0)
    clock.advance(0.5)
    with pytest.raises(TimeoutError):
        await queued
    writer.release.set()
    assert await first == "FIRST"
    await asyncio.sleep(0)
    assert writer.batches == [["first"]]
    await commit.close()


async def test_a_deadline_that_has_come_fails_at_once_without_a_timer() -> None:
    clock = ManualClock()
    commit: GroupCommit[str, str] = GroupCommit(HeldWriter(), clock)
    with pytest.raises(TimeoutError):
        await commit.submit("too late", clock.monotonic())
    assert clock.pending == 0
    await commit.close()
