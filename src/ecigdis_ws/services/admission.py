"""Connections on their way in: the per-address cap, and one deadline for the whole way.

A connection counts against its address from its Engine.IO handshake, its first
request, until its socket authenticates, whether or not it ever sends the
Socket.IO CONNECT. One that has not authenticated within AUTH_TIMEOUT_MS of its
handshake is closed at the transport (Node's socket.io closes a connection that
joins no namespace after its connect timeout). Without this a websocket that
answered pings but never sent CONNECT stayed open for ever, counted nowhere.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ecigdis_ws.clock import Clock, Timer
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.services.tasks import BackgroundTasks

log = get_logger(__name__)

CloseConnection = Callable[[str], Coroutine[Any, Any, None]]


@dataclass
class _Arrival:
    address: str
    deadline: Timer


class AdmissionService:
    def __init__(
        self,
        *,
        clock: Clock,
        tasks: BackgroundTasks,
        auth_timeout_s: float,
        per_address_cap: int,
        close_connection: CloseConnection | None = None,  # the transport's; None: none closed
    ) -> None:
        self._clock = clock
        self._tasks = tasks
        self._auth_timeout_s = auth_timeout_s
        self._cap = per_address_cap  # 0: no cap
        self._arrivals: dict[str, _Arrival] = {}
        self._by_address: dict[str, set[str]] = {}
        self._upgrades: dict[str, str] = {}  # an upgrade's key: its address
        # Closes a connection whose deadline passed (the Socket.IO server's).
        self.close_connection = close_connection

    def has_room(self, address: str) -> bool:
        """May one more connection from `address` start its handshake?"""
        return not self._cap or len(self._by_address.get(address, ())) < self._cap

    def arrived(self, connection_id: str, address: str) -> None:
        """A handshake opened a connection: counted, and its deadline armed."""
        deadline = self._clock.call_later(
            self._auth_timeout_s, lambda: self._deadline_passed(connection_id)
        )
        self._arrivals[connection_id] = _Arrival(address, deadline)
        self._by_address.setdefault(address, set()).add(connection_id)

    def upgrade_started(self, key: str, address: str) -> None:
        """A websocket waiting to take over a polling session: counted with the
        address's connections until `upgrade_ended` (the transport's upgrade
        deadline bounds the wait, so no deadline of ours)."""
        self._by_address.setdefault(address, set()).add(key)
        self._upgrades[key] = address

    def upgrade_ended(self, key: str) -> None:
        address = self._upgrades.pop(key, None)
        if address is not None:
            self._discard(address, key)

    def authenticated(self, connection_id: str) -> None:
        """Its socket authenticated: no longer counted, no deadline."""
        self._forget(connection_id)

    def closed(self, connection_id: str) -> None:
        self._forget(connection_id)

    def _forget(self, connection_id: str) -> None:
        arrival = self._arrivals.pop(connection_id, None)
        if arrival is None:
            return
        arrival.deadline.cancel()
        self._discard(arrival.address, connection_id)

    def _discard(self, address: str, key: str) -> None:
        waiting = self._by_address[address]
        waiting.discard(key)
        if not waiting:
            del self._by_address[address]

    def _deadline_passed(self, connection_id: str) -> None:
        if connection_id not in self._arrivals:
            return
        self._forget(connection_id)
        log.info("closing a connection that did not authenticate in time", sid=connection_id)
        if self.close_connection is not None:
            self._tasks.spawn(self.close_connection(connection_id))

    @property
    def waiting(self) -> int:
        """Connections between their handshake and authentication."""
        return len(self._arrivals)
