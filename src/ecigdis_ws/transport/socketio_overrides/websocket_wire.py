"""A websocket connection's byte stream, with the writes of one loop turn corked.

Every frame sent to a socket is appended to its `Wire`; the first write of a loop
turn schedules one flush for every wire written in that turn (`Corked`), so the
frames to one socket go out in one system call, and a message to a conversation of
five schedules one callback, not five. A client that reads too slowly is cut once
more than the limit waits in the kernel's write buffer for it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import cast

from ecigdis_ws.transport.socketio_overrides.polling import OUTSIDE_ANY_EVENT


class Corked:
    """The connections written to in this turn of the event loop, flushed together
    by one callback: a message to a conversation of five schedules one callback,
    not five."""

    __slots__ = ("_loop", "_wires")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._wires: list[Wire] = []

    def add(self, wire: Wire) -> None:
        if not self._wires:
            # (outside the sender's context: an overflow's line names the slow client)
            self._loop.call_soon(self._flush, context=OUTSIDE_ANY_EVENT)
        self._wires.append(wire)

    def _flush(self) -> None:
        wires, self._wires = self._wires, []
        for wire in wires:
            wire.flush()


# One per event loop (tests run several loops in turn, one after the other).
_corked: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Corked] = (
    weakref.WeakKeyDictionary()
)


def _corked_for(loop: asyncio.AbstractEventLoop) -> Corked:
    corked = _corked.get(loop)
    if corked is None:
        corked = _corked[loop] = Corked(loop)
    return corked


class Wire:
    """The connection's byte stream, with writes corked for one loop turn."""

    __slots__ = ("_corked", "_limit", "_on_overflow", "_pending", "_transport", "closed")

    def __init__(
        self, transport: asyncio.BaseTransport, limit: int, on_overflow: Callable[[], None]
    ) -> None:
        # (uvloop's transports do not subclass asyncio's classes, but behave alike)
        self._transport = cast(asyncio.WriteTransport, transport)
        self._pending: list[bytes] = []
        self._corked = _corked_for(asyncio.get_running_loop())
        self._limit = limit
        self._on_overflow = on_overflow
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if not self._pending:
            self._corked.add(self)
        self._pending.append(data)

    def close(self) -> None:
        """No more writes; what was written before still goes out (a CONNECT_ERROR
        or DISCONNECT written just before the reader closed the socket)."""
        self.flush()
        self.closed = True

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        if self.closed or self._transport.is_closing():
            return
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        if self._transport.get_write_buffer_size() > self._limit:
            self.closed = True
            self._transport.abort()  # the reader sees the connection lost, and cleans up
            self._on_overflow()

