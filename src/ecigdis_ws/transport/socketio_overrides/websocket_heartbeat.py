"""A websocket session's heartbeat on the server's injected clock.

python-engineio sleeps a task per socket between PINGs; once a websocket carries a
session (DirectSocket, websocket.py) its heartbeat runs on the clock's timers
instead, as every other timer does: a PING every ping interval, on a grid shared by
every socket, and the connection closed when no PONG came back within the ping
timeout (tests move the clock instead of waiting). Before then, and on polling,
engineio's own heartbeat runs.
"""

from __future__ import annotations

from engineio import packet as eio_packet

from ecigdis_ws.clock import Clock, Timer
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.transport.socketio_overrides.polling import PollingSocket, keep_closing
from ecigdis_ws.transport.socketio_overrides.websocket_wire import Wire
from ecigdis_ws.websocket_frames import frame

log = get_logger(__name__)

# Heartbeats fall due on a grid of this step (wall clock), so the pings of every
# socket due within one step go out in one loop turn, and their pongs come back
# together: an idle node wakes once a step, not once per socket (40 times a
# second with 1,000 sockets). A ping up to this much later than PING_INTERVAL_MS
# is well within what clients allow (the interval plus PING_TIMEOUT_MS).
HEARTBEAT_STEP_S = 1.0


def on_step(now: float, delay: float) -> float:
    """`delay`, lengthened so that it ends on the heartbeat grid."""
    return delay + (-(now + delay)) % HEARTBEAT_STEP_S


class HeartbeatSocket(PollingSocket):
    """A session whose heartbeat, once its websocket took over (`_wire` set, by
    DirectSocket), runs on the clock's timers, not a sleeping task per socket."""

    _wire: Wire | None  # the websocket's, once it took over the session
    _clock: Clock
    _ping_timer: Timer | None  # the next PING
    _pong_timer: Timer | None  # set while a PING waits for its PONG

    def adopt_heartbeat(self) -> None:
        """No heartbeat on the clock until the websocket takes over."""
        self._clock = self._policy.clock
        self._ping_timer = None
        self._pong_timer = None

    def end_transport(self) -> None:
        """Close the websocket itself (DirectSocket's), after what was written before."""
        raise NotImplementedError

    def _start_heartbeat(self) -> None:
        delay = on_step(self._clock.now(), self.server.ping_interval)
        self._ping_timer = self._clock.call_later(delay, self._ping)

    def schedule_ping(self) -> None:
        """A PONG came: the next PING one interval from now."""
        if self._wire is None:
            super().schedule_ping()
        elif self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
            self._start_heartbeat()
        # (a PONG to a PING sent before the websocket took over: nothing waits on it)

    def _ping(self) -> None:
        self._ping_timer = None
        if not self.closing and not self.closed and self._wire is not None:
            self._wire.write(frame(eio_packet.Packet(eio_packet.PING).encode()))
            self._pong_timer = self._clock.call_later(self.server.ping_timeout, self._pong_missed)

    def _pong_missed(self) -> None:
        self._pong_timer = None
        if not self.closed:
            log.info("closing a websocket whose client missed its heartbeat", sid=self.sid)
            keep_closing(self._close_for_silence())

    async def _close_for_silence(self) -> None:
        await self.close(wait=False, abort=False, reason=self.server.reason.PING_TIMEOUT)
        self.end_transport()

    @property
    def awaiting_pong(self) -> bool:
        return self._wire is not None and self._pong_timer is not None

    def _stop_heartbeat(self) -> None:
        for timer in (self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._pong_timer = None

    async def check_ping_timeout(self) -> bool:
        if self._wire is None:
            result: bool = await super().check_ping_timeout()
            return result
        return not self.closed  # (the clock's pong timer closes a silent client)
