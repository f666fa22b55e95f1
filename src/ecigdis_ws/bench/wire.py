"""Engine.IO v4 / Socket.IO v5 over one websocket, cut down to what a load generator
needs, as a sans-I/O piece: bytes in, events out, frames out as bytes.

`ClientConnection` holds no socket, no task and no event loop (as the `websockets`
library's protocol layer): `receive_data` parses what the server sent — the HTTP
upgrade answer, then websocket frames, then Engine.IO / Socket.IO packets — and
reports each event to a `Recorder` (what the bench measures) or a `Session` (the
handshake and the answers to calls); the frames it owes the server (pong, the
Engine.IO "3" that answers a ping, a close reply) wait in `data_to_send`; and the
`call` / `message_send` / `goodbye` methods return the frames to write. The asyncio
adapter that moves these bytes is client.py.

The events are method calls rather than event objects: the load generator shares two
cores with the server it measures, and `message:new` — several per message sent — goes
from the frame straight to `Recorder.message_new` with no object built in between.

Frames to the server are masked with an all-zero key, which RFC 6455 allows (the key
must be present, not secret), so masking costs nothing.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Protocol

from ecigdis_ws.websocket_frames import FIN, MAX_CONTROL_PAYLOAD, TEXT, ZERO_MASK, frame

SOCKET_IO_PATH = "/socket.io/?EIO=4&transport=websocket"
# A server's HTTP answer to the upgrade is a few hundred bytes; more is not a websocket.
MAX_HANDSHAKE_BYTES = 16 * 1024
# Packets are small here; the cap only stops a broken server from filling memory.
MAX_FRAME_BYTES = 16 * 1024 * 1024
_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
FINAL_TEXT = FIN | TEXT

# A pending message:send: (phase, message key, group, send time in monotonic ns)
PendingSend = tuple[int, int, int, int]
# What a tick of the sender does instead of a message:send (changes.py): an edit or a
# deletion of one of its own messages.
EDIT, DELETE = 1, 2
# A pending message:edit or message:delete: (EDIT or DELETE, phase, group, emit time in
# monotonic ns, the message's server id)
PendingChange = tuple[int, int, int, int, int]


class Recorder(Protocol):
    """Where a connection reports what the bench measures (worker.py implements it)."""

    def message_new(self, data: bytes) -> None: ...

    def message_acked(self, entry: PendingSend, reply: Any) -> None: ...

    def message_changed(self, data: bytes) -> None:
        """`message:updated` or `message:deleted` (the whole Socket.IO packet)."""

    def change_acked(self, entry: PendingChange, reply: Any) -> None: ...

    def error_event(self, payload: Any) -> None: ...

    def other_event(self, data: bytes) -> None: ...


class Session(Protocol):
    """Where a connection reports its handshake and the answers to `call` (client.py)."""

    def opened(self) -> None:
        """Engine.IO OPEN: the token may be sent."""

    def connected(self) -> None:
        """Socket.IO CONNECT accepted."""

    def authenticated(self) -> None:
        """The server's `authenticated` event."""

    def refused(self, reason: str) -> None:
        """The handshake failed: every step not yet done fails with `reason`."""

    def answered(self, ack_id: int, reply: Any) -> None:
        """The ack of a `call`: its first argument."""


def websocket_url(url: str) -> str:
    """The Socket.IO websocket endpoint under a server's base URL."""
    base = url.rstrip("/")
    if base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    elif base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    return base + SOCKET_IO_PATH


def text_frame(payload: bytes) -> bytes:
    """A final, masked (zero key) text frame."""
    return frame(payload, TEXT, ZERO_MASK)


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A masked (zero key) control frame; control payloads are at most 125 bytes."""
    return frame(payload[:MAX_CONTROL_PAYLOAD], opcode, ZERO_MASK)


def error_code(payload: Any) -> str:
    """The error code in an ack's or event's payload, else UNKNOWN."""
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return str(error["code"])
        data = payload.get("data")
        if isinstance(data, dict) and isinstance(data.get("code"), str):
            return str(data["code"])
    return "UNKNOWN"


def reply_code(reply: Any) -> str | None:
    """None for `{ok: true}`, else the error code of a failed ack."""
    if isinstance(reply, dict) and reply.get("ok") is True:
        return None
    return error_code(reply)


def upgrade_request(host: str, target: str, key: bytes) -> bytes:
    """The HTTP request that opens a websocket at `target`, offering no extension."""
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def upgrade_failure(head: bytes, accept: bytes) -> str | None:
    """Why the server's answer `head` (without its blank line) is not the upgrade to
    the websocket whose expected Sec-WebSocket-Accept is `accept`; None when it is."""
    status_line, _, headers = head.partition(b"\r\n")
    fields = status_line.split(b" ", 2)
    if len(fields) < 2 or fields[1] != b"101":
        code = fields[1].decode(errors="replace") if len(fields) > 1 else "?"
        return f"HTTP {code}"
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-accept" and value.strip() != accept:
            return "bad Sec-WebSocket-Accept"
    return None


def accept_key(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept a server must answer the Sec-WebSocket-Key `key` with."""
    return base64.b64encode(hashlib.sha1(key + _WEBSOCKET_GUID).digest())
