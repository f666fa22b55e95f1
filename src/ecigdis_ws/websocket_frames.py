"""RFC 6455 frames as bytes: the one framer the server, the load generator and the
tests share.

The server writes each Engine.IO packet as one unmasked, uncompressed, final frame
(transport/socketio_overrides/websocket.py); a client must mask what it sends
(RFC 6455 5.3), and an all-zero key is allowed, which makes masking free (the load
generator's choice, bench/wire.py). Pure functions of their arguments.
"""

from __future__ import annotations

import struct

# Opcodes (RFC 6455 5.2)
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
FIN = 0x80
MASKED = 0x80
ZERO_MASK = b"\x00\x00\x00\x00"
# Control frames carry at most this much payload (RFC 6455 5.5).
MAX_CONTROL_PAYLOAD = 125


def frame(
    payload: str | bytes, opcode: int | None = None, mask: bytes | None = None,
    final: bool = True,
) -> bytes:
    """One frame: text for a str, binary for bytes, unless `opcode` says; masked
    with the 4-byte `mask` (a client's frame), else unmasked (a server's); `final`
    False for a fragment that more frames continue."""
    if isinstance(payload, str):
        data, kind = payload.encode(), TEXT
    else:
        data, kind = bytes(payload), BINARY
    if opcode is not None:
        kind = opcode
    size = len(data)
    bit = 0 if mask is None else MASKED
    first = FIN | kind if final else kind
    if size < 126:
        header = bytes((first, bit | size))
    elif size < 65536:
        header = struct.pack("!BBH", first, bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, bit | 127, size)
    if mask is None:
        return header + data
    if mask != ZERO_MASK:
        data = bytes(byte ^ mask[index % 4] for index, byte in enumerate(data))
    return header + mask + data
