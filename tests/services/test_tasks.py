"""BackgroundTasks: the async work that timer callbacks start is held here until it
ends (so it is never garbage-collected mid-flight), its failures are logged rather
than lost, `drain` lets it finish and `cancel_all` stops it at shutdown."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from ecigdis_ws.services.tasks import BackgroundTasks


async def test_spawned_work_runs_and_its_task_is_returned() -> None:
    tasks = BackgroundTasks()
    done: list[str] = []

    async def work() -> str:
        done.append("ran")
        return "result"

    task = tasks.spawn(work())
    await tasks.drain()

    assert done == ["ran"]
    assert task.result() == "result"


async def test_running_work_is_held_until_it_ends() -> None:
    tasks = BackgroundTasks()
    release = asyncio.Event()

    async def work() -> None:
        await release.wait()

    tasks.spawn(work())
    tasks.spawn(work())
    await asyncio.sleep(0)
    assert len(tasks) == 2

    release.set()
    await tasks.drain()

    assert len(tasks) == 0


async def test_drain_waits_for_work_that_other_work_spawns_meanwhile() -> None:
    tasks = BackgroundTasks()
    order: list[str] = []

    async def child() -> None:
        await asyncio.sleep(0)
        order.append("child")

    async def parent() -> None:
        await asyncio.sleep(0)
        tasks.spawn(child())
        order.append("parent")

    tasks.spawn(parent())
    await tasks.drain()

    assert order == ["parent", "child"]
    assert len(tasks) == 0


async def test_drain_with_nothing_running_returns_at_once() -> None:
    tasks = BackgroundTasks()

    await tasks.drain()  # a drain that waited for something would hang here

    assert len(tasks) == 0


async def test_a_failure_is_logged_with_its_exception_and_does_not_stop_drain() -> None:
    tasks = BackgroundTasks()
    survivors: list[str] = []

    async def broken() -> None:
        raise RuntimeError("boom")

    async def fine() -> None:
        await asyncio.sleep(0)
        survivors.append("fine")

    with capture_logs() as logs:
        failing = tasks.spawn(broken())
        tasks.spawn(fine())
        await tasks.drain()

    assert survivors == ["fine"]
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        ("background task failed", "error")
    ]
    assert logs[0]["exc_info"] is failing.exception()
    assert str(logs[0]["exc_info"]) == "boom"
    assert len(tasks) == 0


async def test_work_that_succeeds_logs_nothing() -> None:
    tasks = BackgroundTasks()

    async def fine() -> int:
        return 1

    with capture_logs() as logs:
        tasks.spawn(fine())
        await tasks.drain()

    assert logs == []


async def test_cancel_all_stops_running_work_and_lets_it_clean_up() -> None:
    tasks = BackgroundTasks()
    never = asyncio.Event()
    cleaned_up: list[str] = []

    async def forever(name: str) -> None:
        try:
            await never.wait()
        finally:
            cleaned_up.append(name)

    first, second = tasks.spawn(forever("a")), tasks.spawn(forever("b"))
    await asyncio.sleep(0)

    with capture_logs() as logs:
        await tasks.cancel_all()

    assert first.cancelled() and second.cancelled()
    assert sorted(cleaned_up) == ["a", "b"]
    assert len(tasks) == 0
    assert logs == []  # a cancellation is not a failure


async def test_cancel_all_also_cancels_work_not_yet_started() -> None:
    tasks = BackgroundTasks()
    started: list[str] = []

    async def work() -> None:
        started.append("started")

    task = tasks.spawn(work())
    await tasks.cancel_all()

    assert task.cancelled()
    assert started == []
    assert len(tasks) == 0


async def test_cancel_all_does_not_touch_work_that_already_finished() -> None:
    tasks = BackgroundTasks()

    async def work() -> str:
        return "kept"

    task = tasks.spawn(work())
    await tasks.drain()
    await tasks.cancel_all()

    assert not task.cancelled()
    assert task.result() == "kept"
