"""The stages of a chat message's path through the server, for budget.py.

A py-spy sample (its frames root first, `function (file:line)`, native frames
included) is put in the stage of its innermost frame that names one: a sample
inside `orjson.dumps` called by the fan-out is "encode", one in the fan-out's own
loop is "fan-out"; a sample no rule names is the event loop's. Samples of a
thread that waits (the loop in epoll, aiosqlite's thread on its queue) are idle
and left out.
"""

from __future__ import annotations

IDLE = "idle"

# (stage, substrings of a frame), in the order the table lists them.
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("frames in (aiohttp websocket reader, uvloop reads)", (
        "aiohttp/_websocket", "WebSocketReader", "web_ws.py", "streams.py",
        "data_received", "DirectSocket._read", "uv__read", "uv__stream_io")),
    ("Engine.IO / Socket.IO decode", (
        "loads (", "ack_id_end", "socketio_problem", "well_formed_event", "engineio_problem",
        "packet.py", "sid_from_eio_sid", "is_connected")),
    ("dispatch (session, context, in-flight count)", (
        "socket_events.py", "sessions.py", "drain.py", "log_setup", "contextvars")),
    ("validation", ("validation.py",)),
    ("rate limit", ("rate_limit.py",)),
    ("membership", ("access.py", "membership")),
    ("deadlines (asyncio.timeout: the send's, the engine's)", ("timeouts.py",)),
    ("store: group commit and SQL on the loop", (
        "group_commit.py", "storage/", "aiosqlite", "aiomysql", "pymysql")),
    ("store: thread hand-offs (aiosqlite)", ("sem_post", "pthread_cond_signal")),
    (SQLITE_THREAD := "store: SQLite's own work (aiosqlite's thread)", (
        "libsqlite", "fdatasync", "pwrite")),
    ("encode (JSON, Socket.IO and websocket framing)", (
        "dumps (", "encode (", "frame (ecigdis_ws", "message_frame", "wire (ecigdis_ws",
        "iso_ms", "ack (ecigdis_ws")),
    ("fan-out (rooms, recipients)", (
        "managers.py", "fanout/", "base_manager.py", "emit (", "typing_indicators")),
    # ("Wire.flush" also matches "_Wire.flush": profiles from before websocket_wire.py.)
    ("socket writes (system calls)", ("Wire._flush", "Wire.flush", "Corked._flush",
                                      "write (libc", "writev", "uv__write",
                                      "Wire.write")),
    (ACK := "Socket.IO event shortcut and the ack", ("_direct_event", "ack_arguments")),
    ("metrics", ("prometheus_client", "metrics.py")),
    ("send service", ("services/messages.py",)),
]
# What no rule names: uvloop running callbacks and tasks, timers, waits for the GIL.
EVENT_LOOP = "event loop: callbacks, tasks, timers, GIL waits"
STAGES = [*(stage for stage, _ in RULES), EVENT_LOOP]


def _idle(frames: list[str]) -> bool:
    leaf = frames[-1]
    if "epoll_pwait" in leaf or "epoll_wait" in leaf:
        return True
    # aiosqlite's thread waiting on its queue for the next statement
    python = [frame for frame in frames if ".py:" in frame]
    return bool(python) and python[-1].startswith("_connection_worker_thread") and (
        python[-1].endswith("core.py:59)"))


def stage_of(frames: list[str]) -> str:
    if _idle(frames):
        return IDLE
    if any("_connection_worker_thread" in frame for frame in frames):
        return SQLITE_THREAD
    for frame in reversed(frames):
        for stage, needles in RULES:
            if any(needle in frame for needle in needles):
                return stage
    return EVENT_LOOP
