"""Issue 28, T2: where an edit's and a deletion's time goes before the room hears it.

On an idle event loop (no other load), against the storage layer alone, N times each,
wall-clock per call: a send (store_message: the group commit, a batch of one), the read
every change starts with (changes.message, as MessageChangeService.live_message), the
edit's write transaction (edit_message), the deletion's (delete_message), and on SQLite
the checkpoint after a deletion (scrub), which the room no longer waits for. The
membership check before each is the same for all (cached) and left out.

    PYTHONPATH=$PWD/src .venv/bin/python benchmarks/results/issue28/stage_timing.py \
        sqlite:////tmp/i28-profile/t.db  mysql://root@127.0.0.1:3306/i28_profile
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

from ecigdis_ws.settings import load_settings
from ecigdis_ws.storage.factory import open_storage

N = 300


def ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": round(statistics.median(ordered) * 1e3, 3),
            "p99": round(ordered[int(0.99 * (len(ordered) - 1))] * 1e3, 3)}


async def measure(url: str) -> dict[str, dict[str, float]]:
    settings = load_settings({"DATABASE_URL": url, "DB_TABLE_PREFIX": "i28p_"}, None)
    storage = await open_storage(settings)
    await storage.migrate()
    conversation = await storage.conversations.create_conversation(
        "t", ["1", "2"] if settings.user_id_type == "string" else [1, 2], 0)
    user = "1" if settings.user_id_type == "string" else 1
    timings: dict[str, list[float]] = {k: [] for k in (
        "send (store_message)", "read (changes.message)", "edit (edit_message)",
        "delete (delete_message)", "scrub (after a deletion)")}
    ids = []
    for i in range(2 * N):
        started = time.perf_counter()
        result = await storage.messages.store_message(conversation, user, "a", f"c{i}",
                                                      f"text {i}", 1000 + i)
        timings["send (store_message)"].append(time.perf_counter() - started)
        ids.append(result.message.id)
    for message_id in ids[:N]:
        started = time.perf_counter()
        message = await storage.changes.message(conversation, message_id)
        timings["read (changes.message)"].append(time.perf_counter() - started)
        assert message is not None
        started = time.perf_counter()
        await storage.changes.edit_message(message, "edited", 5000)
        timings["edit (edit_message)"].append(time.perf_counter() - started)
    for message_id in ids[N:]:
        message = await storage.changes.message(conversation, message_id)
        assert message is not None
        started = time.perf_counter()
        await storage.changes.delete_message(message, user, 6000)
        timings["delete (delete_message)"].append(time.perf_counter() - started)
        started = time.perf_counter()
        await storage.changes.scrub()
        timings["scrub (after a deletion)"].append(time.perf_counter() - started)
    await storage.close()
    return {k: ms(v) for k, v in timings.items()}


async def main(urls: list[str]) -> None:
    results = {url.split(":")[0]: await measure(url) for url in urls}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
