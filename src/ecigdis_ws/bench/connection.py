"""One Socket.IO client connection as a sans-I/O state machine (see wire.py).

Bytes in (`receive_data`), events out (to a Recorder and a Session), frames out as
bytes (`data_to_send` for what it owes the server, the return value of the send
methods for what the bench says). It never touches a socket: client.py does.
"""

from __future__ import annotations

from typing import Any

import orjson

from ecigdis_ws.bench.wire import (
    EDIT,
    FINAL_TEXT,
    MAX_FRAME_BYTES,
    MAX_HANDSHAKE_BYTES,
    PendingChange,
    PendingSend,
    Recorder,
    Session,
    accept_key,
    control_frame,
    error_code,
    text_frame,
    upgrade_failure,
    upgrade_request,
)
from ecigdis_ws.websocket_frames import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT

# Engine.IO packet types (the first byte), and Socket.IO's (the second, after "4")
_OPEN, _CLOSE_PACKET, _PING_PACKET, _MESSAGE = ord("0"), ord("1"), ord("2"), ord("4")
_CONNECT, _DISCONNECT, _EVENT, _ACK, _CONNECT_ERROR = (
    ord("0"), ord("1"), ord("2"), ord("3"), ord("4"))
_MESSAGE_NEW = b'42["message:new",'
_PRESENCE = b'42["user:'
_CHANGED = (b'42["message:updated",', b'42["message:deleted",')
# The Socket.IO DISCONNECT and the websocket close (1000, normal) a client says goodbye with
_GOODBYE_PACKET = b"41"
_NORMAL_CLOSURE = b"\x03\xe8"


class ClientConnection:
    """The client side of one Socket.IO websocket, from the HTTP upgrade on.

    After `receive_data`, `failure` says why the connection must be dropped (the
    server broke the protocol, refused us or said goodbye), `close_received` that the
    server closed the websocket (our reply is in `data_to_send`): either way nothing
    more is parsed."""

    def __init__(self, host: str, target: str, key: bytes, recorder: Recorder,
                 session: Session) -> None:
        """`key` is the Sec-WebSocket-Key (base64 of 16 random bytes)."""
        self.recorder = recorder
        self.session = session
        self.request = upgrade_request(host, target, key)
        self._accept = accept_key(key)
        self.upgraded = False
        self.failure: str | None = None
        self.close_received = False
        self.done = False  # nothing more is parsed: failure or close_received
        # What receive_data returns: done, or frames wait in data_to_send. One flag
        # kept up to date, so the hot path reads one attribute.
        self._attention = False
        # ack id -> the message:send it answers; the rest of the acks answer calls
        self.pending: dict[int, PendingSend] = {}
        # ack id -> the message:edit or message:delete it answers (changes.py)
        self.changes: dict[int, PendingChange] = {}
        self._next_ack = 0
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._fragments_text = False
        self._outgoing: list[bytes] = []

    # -- frames out ---------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The frames owed to the server since the last call (pongs, close replies)."""
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        self._attention = self.done
        return data

    def authenticate(self, auth: str) -> bytes:
        """The Socket.IO CONNECT that carries the token."""
        return text_frame(b"40" + orjson.dumps({"token": auth}))

    def call(self, event: str, data: Any) -> tuple[int, bytes]:
        """`event` with an ack id: (the ack id Session.answered will name, the frame)."""
        ack_id = self._next_ack
        self._next_ack += 1
        return ack_id, text_frame(b"42%d" % ack_id + orjson.dumps([event, data]))

    def message_send(self, conversation_id: int, group: int, phase: int, key: int,
                     run_id: bytes, now: int) -> bytes:
        """`message:send` whose text carries the phase and the send time `now` (monotonic ns,
        one clock for every process on Linux), so each receiver measures its latency;
        its ack goes to Recorder.message_acked."""
        ack_id = self._next_ack
        self._next_ack += 1
        self.pending[ack_id] = (phase, key, group, now)
        return text_frame(
            b'42%d["message:send",{"conversationId":%d,"text":"%d:%d","messageId":"%s.%d"}]'
            % (ack_id, conversation_id, phase, now, run_id, key))

    def message_change(self, kind: int, conversation_id: int, group: int, phase: int,
                       server_id: int, now: int) -> bytes:
        """`message:edit` (kind EDIT: the text becomes "phase:now", so it always differs
        from the text it replaces) or `message:delete` of the message `server_id`; `now`
        is the emit time (monotonic ns), the receivers' `message:updated` /
        `message:deleted` are timed from it, and its ack goes to Recorder.change_acked."""
        ack_id = self._next_ack
        self._next_ack += 1
        self.changes[ack_id] = (kind, phase, group, now, server_id)
        if kind == EDIT:
            body = b'["message:edit",{"conversationId":%d,"id":%d,"text":"%d:%d"}]' % (
                conversation_id, server_id, phase, now)
        else:
            body = b'["message:delete",{"conversationId":%d,"id":%d}]' % (
                conversation_id, server_id)
        return text_frame(b"42%d" % ack_id + body)

    def goodbye(self) -> bytes:
        """Socket.IO DISCONNECT then a normal websocket close; nothing before the upgrade."""
        if not self.upgraded:
            return b""
        return text_frame(_GOODBYE_PACKET) + control_frame(CLOSE, _NORMAL_CLOSURE)

    # -- bytes in -----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> bool:
        """Parse what the server sent; a partial frame waits for the rest. True when
        the driver has work: frames in `data_to_send`, or the connection is `done`."""
        if self.done:
            return True
        buffer = self._buffer + data if self._buffer else data
        if not self.upgraded:
            buffer = self._upgrade(buffer)
            if not self.upgraded:
                return self.done
        # The hot path, inlined: every frame the bench receives goes through this loop.
        size = len(buffer)
        position = 0
        message_new = self.recorder.message_new
        while size - position >= 2:
            first = buffer[position]
            length = buffer[position + 1]
            if length & 0x80:
                self._fail("the server masked a frame")
                break
            if length < 126:
                start = position + 2
            elif length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(buffer[position + 2:position + 4], "big")
                start = position + 4
            else:
                if size - position < 10:
                    break
                length = int.from_bytes(buffer[position + 2:position + 10], "big")
                start = position + 10
                if length > MAX_FRAME_BYTES:
                    self._fail("frame too large")
                    break
            end = start + length
            if end > size:
                break
            position = end
            if first == FINAL_TEXT:  # a whole text frame
                payload = buffer[start:end]
                if payload.startswith(_MESSAGE_NEW):
                    message_new(payload)
                else:
                    self._packet(payload)
            else:
                self._frame(first, buffer[start:end])
            if self.done:
                break
        self._buffer = buffer[position:] if position < size else b""
        return self._attention

    def _upgrade(self, buffer: bytes) -> bytes:
        """Read the server's answer to the upgrade; what follows it."""
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            self._buffer = buffer
            if len(buffer) > MAX_HANDSHAKE_BYTES:
                self._fail("no websocket upgrade")
            return b""
        failure = upgrade_failure(buffer[:end], self._accept)
        if failure is not None:
            self._fail(failure)
            return b""
        self.upgraded = True
        return buffer[end + 4:]

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self.done = self._attention = True

    def _owe(self, frame: bytes) -> None:
        self._outgoing.append(frame)
        self._attention = True

    def _frame(self, first: int, payload: bytes) -> None:
        """Everything but a whole text frame: fragments, pings, close."""
        opcode = first & 0x0F
        if opcode in (TEXT, BINARY, CONTINUATION):
            self._fragments.append(payload)
            if first & 0x80:
                whole = b"".join(self._fragments)
                text = opcode == TEXT or (opcode == CONTINUATION and self._fragments_text)
                self._fragments = []
                if text:
                    self._packet(whole)
            elif opcode != CONTINUATION:
                self._fragments_text = opcode == TEXT
        elif opcode == PING:
            self._owe(control_frame(PONG, payload))
        elif opcode == CLOSE:
            self._owe(control_frame(CLOSE, payload[:2]))
            self.close_received = self.done = True

    # -- Engine.IO / Socket.IO packets --------------------------------------------------------

    def _packet(self, data: bytes) -> None:
        if not data:
            return
        first = data[0]
        if first == _MESSAGE and len(data) > 1:
            self._socket_io_packet(data[1], data)
        elif first == _PING_PACKET:
            self._owe(text_frame(b"3"))
        elif first == _OPEN:
            self.session.opened()
        elif first == _CLOSE_PACKET:
            self._fail("closed by the server")

    def _socket_io_packet(self, kind: int, data: bytes) -> None:
        if kind == _EVENT:
            if data.startswith(_MESSAGE_NEW):
                self.recorder.message_new(data)
            elif data.startswith(_PRESENCE):
                self.recorder.other_event(data)
            elif data.startswith(_CHANGED):
                self.recorder.message_changed(data)
            else:
                self._event(data)
        elif kind == _ACK:
            self._ack(data)
        elif kind == _CONNECT:
            self.session.connected()
        elif kind == _CONNECT_ERROR:
            reason = error_code(orjson.loads(data[2:]))
            self.session.refused(reason)
            self._fail(reason)
        elif kind == _DISCONNECT:
            self._fail("disconnected by the server")

    def _event(self, data: bytes) -> None:
        packet = orjson.loads(data[2:])
        name = packet[0] if isinstance(packet, list) and packet else None
        payload = packet[1] if isinstance(packet, list) and len(packet) > 1 else None
        if name == "authenticated":
            self.session.authenticated()
        elif name == "error":
            if error_code(payload) == "AUTH_FAILED":
                self.session.refused("AUTH_FAILED")
            self.recorder.error_event(payload)
        else:
            self.recorder.other_event(data)

    def _ack(self, data: bytes) -> None:
        start = data.find(b"[", 2)
        if start < 0:
            return
        ack_id = int(data[2:start])
        args = orjson.loads(data[start:])
        reply = args[0] if isinstance(args, list) and args else None
        entry = self.pending.pop(ack_id, None)
        if entry is not None:
            self.recorder.message_acked(entry, reply)
            return
        change = self.changes.pop(ack_id, None)
        if change is not None:
            self.recorder.change_acked(change, reply)
        else:
            self.session.answered(ack_id, reply)
