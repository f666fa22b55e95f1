"""The one way an error reaches a client, whichever transport carries it.

Whatever a handler raised becomes one of the protocol's codes here
(`translate`), every error answer is counted once in `ecigdis_ws_errors_total`
(`count`), and on the socket it is told as the `error` event (`tell_socket`),
whether a client event failed or the server acts on its own (an expired or a
revoked token). The transports only shape the answer: the socket's ack and
`error` event (transport/socket_events.py), HTTP's `{"error": {code, message}}`
with a status (transport/http_errors.py).
"""

from __future__ import annotations

import uuid

from prometheus_client import Counter

from ecigdis_ws import events
from ecigdis_ws.errors import ChatError, ErrorCode, StorageUnavailable
from ecigdis_ws.fanout.base import Fanout
from ecigdis_ws.observability.log_setup import get_logger

log = get_logger(__name__)

# Enough to find one failure among a day's log lines, short enough to read out.
TRACE_ID_HEX_DIGITS = 16


class ErrorReports:
    def __init__(self, errors_total: Counter, fanout: Fanout) -> None:
        self._errors_total = errors_total
        self._fanout = fanout

    def translate(self, exc: Exception, what: str, **context: object) -> ChatError:
        """The protocol's answer to `exc`, raised while doing `what`: a ChatError as
        it is; the database timing out as UNAVAILABLE (nothing was stored); anything
        else is a bug, logged with its stack trace under a trace id the client sees."""
        if isinstance(exc, ChatError):
            return exc
        if isinstance(exc, StorageUnavailable):
            log.warning("database unavailable", reason=str(exc), **context)
            return ChatError(ErrorCode.UNAVAILABLE, "database unavailable, try again")
        trace_id = uuid.uuid4().hex[:TRACE_ID_HEX_DIGITS]
        log.error(f"{what} failed", trace_id=trace_id, exc_info=exc, **context)
        return ChatError(ErrorCode.INTERNAL, f"internal error (trace id {trace_id})")

    def count(self, error: ChatError) -> ChatError:
        self._errors_total.labels(error.code.value).inc()
        return error

    async def tell_socket(self, sid: str, error: ChatError, event: str | None) -> None:
        """The `error` event to one socket; `event` names the client event that
        failed, or is None when the server raised it on its own."""
        self.count(error)
        await self._fanout.emit(events.ERROR, error.as_event(event), room=sid)
