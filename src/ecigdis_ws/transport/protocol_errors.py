"""Packets that break the Engine.IO or Socket.IO protocol: checked, counted, closed.

Node's engine.io closes a connection whose packet it cannot parse ("parse error"),
and socket.io-parser does the same one layer up. python-engineio instead lets a
malformed packet escape as an exception (an empty frame, the packet type `9`, a
polling body that is not UTF-8), which aiohttp logs as a plain-text traceback. Here
every packet is checked before engineio or socketio decode it; a packet that fails
is counted in `ecigdis_ws_protocol_errors_total{reason}`, logged as one WARNING
line, and its connection closed. The checks are pure functions of the packet.
"""

from __future__ import annotations

from prometheus_client import Counter

from ecigdis_ws.observability.log_setup import get_logger

log = get_logger(__name__)

# Engine.IO packet types (engine.io-parser): 0 open ... 6 noop. A client sends
# 1-6; "0" is ignored by engineio, as by Node. Anything else, including the
# base64 binary prefix "b", is not a packet this server accepts.
ENGINEIO_TYPES = frozenset("0123456")
# Socket.IO packet types a client may send: CONNECT, DISCONNECT, EVENT, ACK
# (and CONNECT_ERROR, which only servers send: socketio ignores it). BINARY_EVENT
# and BINARY_ACK (5, 6) announce binary attachments, which the chat has none of.
SOCKETIO_TYPES = frozenset("01234")
BINARY_SOCKETIO_TYPES = frozenset("56")
# An ack id is a counter socket.io-client keeps in a JS number: 16 digits hold every
# integer it counts exactly (2**53 - 1). Longer ids would be echoed back verbatim.
MAX_ACK_ID_DIGITS = 16
RECORD_SEPARATOR = "\x1e"  # between the packets of one polling body

# Reasons, the label values of the counter.
BINARY = "binary_data"
ENGINEIO_PACKET = "engineio_packet"
SOCKETIO_PACKET = "socketio_packet"
ACK_ID = "ack_id"
RESERVED_EVENT = "reserved_event"
POLLING_BODY = "polling_body"
PENDING_FRAMES = "pending_frames"  # more frames queued than a socket may have waiting


def engineio_problem(data: str | bytes) -> str | None:
    """The reason a frame or polling packet is refused, None for a valid one."""
    if not isinstance(data, str):
        return BINARY
    if not data:
        return ENGINEIO_PACKET
    if data[0] == "b":
        return BINARY  # (Engine.IO's base64 form of binary data, on polling)
    if data[0] not in ENGINEIO_TYPES:
        return ENGINEIO_PACKET
    return None


def polling_body_problem(body: bytes) -> str | None:
    """The reason a polling POST's body is refused: not UTF-8, or a bad packet."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return POLLING_BODY
    for packet in text.split(RECORD_SEPARATOR):
        problem = engineio_problem(packet)
        if problem is not None:
            return problem
    return None


def ack_id_end(text: str, start: int) -> int:
    """Where the run of digits that starts at `start` ends."""
    end = start
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    return end


def socketio_problem(text: str) -> str | None:
    """The reason an Engine.IO MESSAGE's Socket.IO packet is refused before
    python-socketio decodes it (the rest of its checks are socketio's own)."""
    kind = text[:1]
    if kind in BINARY_SOCKETIO_TYPES:
        return BINARY
    if kind not in SOCKETIO_TYPES:
        return SOCKETIO_PACKET
    start = 1
    if text[1:2] == "/":  # a namespace, up to the comma before the id or data
        comma = text.find(",", 1)
        start = comma + 1 if comma != -1 else len(text)
    if ack_id_end(text, start) - start > MAX_ACK_ID_DIGITS:
        return ACK_ID
    return None


class ProtocolErrors:
    """Counts and logs each refused packet; the caller closes the connection."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter

    def refuse(self, reason: str, sid: str | None = None) -> None:
        self._counter.labels(reason).inc()
        log.warning("closing a connection that broke the protocol", reason=reason, sid=sid)
