"""Whether the client event being handled asked for an acknowledgement.

A handler whose answer would otherwise go out twice (as the ack and as an event)
sends the event only when no ack was asked for. The Socket.IO server sets this
around each client event it dispatches (transport/socketio_overrides/server.py).
"""

from __future__ import annotations

from contextvars import ContextVar

# False where unknown: the event is sent, so a client without an ack still hears.
ACK_WANTED: ContextVar[bool] = ContextVar("ack_wanted", default=False)
