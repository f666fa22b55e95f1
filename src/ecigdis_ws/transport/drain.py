"""Event handlers in flight, so a shutdown finishes them before closing sockets."""

from __future__ import annotations

import asyncio


class InFlight:
    def __init__(self) -> None:
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False

    def enter(self) -> None:
        self._running += 1
        if self._running == 1:
            self._idle.clear()

    def leave(self) -> None:
        self._running -= 1
        if self._running == 0:
            self._idle.set()

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new events from now on; wait for those running. False on timeout."""
        self.draining = True
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    @property
    def running(self) -> int:
        return self._running
