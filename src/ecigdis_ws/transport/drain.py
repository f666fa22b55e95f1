"""Socket events and REST requests in flight, so a shutdown finishes them before
closing the transports, and refuses new ones before anything is done."""

from __future__ import annotations

import asyncio

from ecigdis_ws.errors import ChatError, ErrorCode


class InFlight:
    def __init__(self) -> None:
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False

    def admit(self) -> None:
        """UNAVAILABLE once the drain has begun: checked first, so a refused event
        or request has done nothing."""
        if self.draining:
            raise ChatError(ErrorCode.UNAVAILABLE, "server is shutting down")

    # `with in_flight:` around the work the drain waits for (a plain class, not a
    # generator context manager: this is on every socket event's path).
    def __enter__(self) -> None:
        self._running += 1
        if self._running == 1:
            self._idle.clear()

    def __exit__(self, *_: object) -> None:
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
