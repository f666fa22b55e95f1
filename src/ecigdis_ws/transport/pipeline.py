"""The one way every operation runs, whichever transport brought it.

In order: counted (`ecigdis_ws_events_received_total`, by the socket event or the
operation's name), refused with UNAVAILABLE once the shutdown drain began
(transport/drain.py), the caller identified and held to its rate (the transport's
own step: a socket's session and RATE_LIMIT_EVENTS bucket, a REST bearer token
and the user's bucket, the server API's key), the log context set, the handler run
inside the drain, and whatever it raised translated to one of the protocol's
errors (services/error_reports.py). The transports only shape the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter

from ecigdis_ws.errors import ChatError
from ecigdis_ws.observability.log_setup import EVENT_CONTEXT
from ecigdis_ws.services.error_reports import ErrorReports
from ecigdis_ws.transport.drain import InFlight
from ecigdis_ws.transport.operations import Call, Operation, Reply

# The transport's step before the handler: who calls, within their rate, and the
# payload; it raises ChatError to refuse.
Admit = Callable[[], Awaitable[Call]]


class Pipeline:
    def __init__(self, in_flight: InFlight, received: Counter, errors: ErrorReports) -> None:
        self._in_flight = in_flight
        self._received = received
        self._errors = errors
        self._counters: dict[str, Any] = {}  # each label bound once, not per call

    def count(self, name: str) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = self._received.labels(name)
        counter.inc()

    async def run(
        self,
        operation: Operation,
        name: str,
        admit: Admit,
        where: str,
        sid: str | None = None,  # a socket's event: its log lines name the socket
        user_id: Any = None,
        **log_fields: object,
    ) -> tuple[Call | None, Reply | ChatError]:
        """The call (None if refused before it was made) and its reply, or the
        error to answer. `name` is what the caller asked for (a socket event, or
        the operation's), `where` what a bug is logged as having failed in."""
        self.count(name)
        context = None if sid is None else EVENT_CONTEXT.set((sid, user_id, name))
        call: Call | None = None
        try:
            self._in_flight.admit()
            with self._in_flight:  # (a REST body still arriving is in flight too)
                call = await admit()
                return call, await operation.handle(call)
        except Exception as exc:
            return call, self._errors.translate(exc, where, **log_fields)
        finally:
            if context is not None:
                EVENT_CONTEXT.reset(context)
