"""benchmarks/budget_stages.py: each py-spy sample lands in the stage of its
innermost frame that names one; waiting threads are idle."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from budget_stages import ACK, EVENT_LOOP, IDLE, stage_of

LOOP = ["run_forever (loop.c:33397)", "uv_run (core.c:452)", "Handle__run (loop.c:70959)"]
READ = [*LOOP, "DirectSocket._read (ecigdis_ws/transport/socketio_overrides/websocket.py:293)",
        "ChatSocketServer._direct_event (ecigdis_ws/transport/socketio_overrides/server.py:159)"]


def test_the_innermost_named_frame_decides() -> None:
    fanout = [*READ, "MessageService.send (ecigdis_ws/services/messages.py:80)",
              "DirectEmitManager.emit (ecigdis_ws/transport/socketio_overrides/managers.py:84)"]
    assert stage_of(fanout).startswith("fan-out")
    assert stage_of([*fanout, "dumps (ecigdis_ws/json_codec.py:20)"]).startswith("encode")
    assert stage_of([*fanout, "_Wire._flush (x/websocket.py:1)", "write (libc.so.6)"]
                    ).startswith("socket writes")
    assert stage_of([*READ, "timeout (asyncio/timeouts.py:146)", "getpid (libc.so.6)"]
                    ).startswith("deadlines")
    assert stage_of(READ) == ACK  # _direct_event's own lines: lookups and the ack


def test_waiting_threads_are_idle_and_unnamed_native_work_is_the_loops() -> None:
    assert stage_of([*LOOP, "epoll_pwait (libc.so.6)"]) == IDLE
    assert stage_of(["_connection_worker_thread (aiosqlite/core.py:59)",
                     "0x7f6ec6aa3f16 (libc.so.6)"]) == IDLE
    assert stage_of(["_connection_worker_thread (aiosqlite/core.py:62)",
                     "fdatasync (libc.so.6)"]).startswith("store: SQLite")
    assert stage_of([*LOOP, "0x7f6ec6aa4193 (libc.so.6)"]) == EVENT_LOOP
