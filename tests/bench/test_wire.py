"""The load generator's sans-I/O connection (bench/connection.py, bench/wire.py): bytes
in, events out, frames out as bytes, with no server and no event loop."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from ecigdis_ws.bench.connection import ClientConnection
from ecigdis_ws.bench.wire import (
    MAX_FRAME_BYTES,
    control_frame,
    reply_code,
    text_frame,
    websocket_url,
)
from ecigdis_ws.websocket_frames import CLOSE, PING, PONG, frame

KEY = base64.b64encode(b"0123456789abcdef")
ACCEPT = base64.b64encode(
    hashlib.sha1(KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
UPGRADE = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + ACCEPT + b"\r\n\r\n")
MESSAGE_NEW = b'42["message:new",{"text":"1:5","messageId":"run.7"}]'


class Events:
    """A Recorder and a Session that write down what they hear."""

    def __init__(self) -> None:
        self.heard: list[tuple[Any, ...]] = []

    def message_new(self, data: bytes) -> None:
        self.heard.append(("message_new", data))

    def message_acked(self, entry: tuple[int, int, int, int], reply: Any) -> None:
        self.heard.append(("message_acked", entry, reply))

    def error_event(self, payload: Any) -> None:
        self.heard.append(("error_event", payload))

    def other_event(self, data: bytes) -> None:
        self.heard.append(("other_event", data))

    def opened(self) -> None:
        self.heard.append(("opened",))

    def connected(self) -> None:
        self.heard.append(("connected",))

    def authenticated(self) -> None:
        self.heard.append(("authenticated",))

    def refused(self, reason: str) -> None:
        self.heard.append(("refused", reason))

    def answered(self, ack_id: int, reply: Any) -> None:
        self.heard.append(("answered", ack_id, reply))


def server_frame(payload: bytes, first: int = 0x81) -> bytes:
    """A frame as a server writes it: unmasked (`first`: FIN and the opcode)."""
    return frame(payload, first & 0x0F, final=bool(first & 0x80))


def unmasked(frame: bytes) -> tuple[int, bytes]:
    """(first byte, payload) of a frame we wrote: masked, with the zero key."""
    length = frame[1] & 0x7F
    assert frame[1] & 0x80, "a client's frames are masked"
    offset = 2 if length < 126 else 4 if length == 126 else 10
    assert frame[offset:offset + 4] == b"\x00\x00\x00\x00"
    return frame[0], frame[offset + 4:]


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def connection(events: Events) -> ClientConnection:
    """A connection past its upgrade."""
    connection = ClientConnection("127.0.0.1:8080", "/socket.io/?EIO=4", KEY, events, events)
    assert connection.receive_data(UPGRADE) is False
    assert connection.upgraded
    return connection


def test_the_request_offers_the_key_and_no_extension(events: Events) -> None:
    connection = ClientConnection("example.org:80", "/socket.io/?EIO=4", KEY, events, events)
    assert connection.request.startswith(b"GET /socket.io/?EIO=4 HTTP/1.1\r\nHost: example.org:80")
    assert b"Sec-WebSocket-Key: " + KEY + b"\r\n" in connection.request
    assert b"Extensions" not in connection.request


def test_the_upgrade_may_come_in_pieces_with_the_first_frames(events: Events) -> None:
    connection = ClientConnection("h", "/", KEY, events, events)
    data = UPGRADE + server_frame(b'0{"sid":"x"}')
    for byte in range(len(data)):
        connection.receive_data(data[byte:byte + 1])
    assert connection.upgraded
    assert events.heard == [("opened",)]


@pytest.mark.parametrize(("answer", "failure"), [
    (b"HTTP/1.1 403 Forbidden\r\n\r\n", "HTTP 403"),
    (UPGRADE.replace(ACCEPT, b"forged"), "bad Sec-WebSocket-Accept"),
    (b"x" * 20_000, "no websocket upgrade"),
])
def test_anything_but_the_upgrade_fails_the_connection(
        events: Events, answer: bytes, failure: str) -> None:
    connection = ClientConnection("h", "/", KEY, events, events)
    assert connection.receive_data(answer) is True
    assert (connection.done, connection.failure) == (True, failure)


def test_a_frame_split_anywhere_is_parsed_once_whole(
        connection: ClientConnection, events: Events) -> None:
    long_text = b'42["message:new",{"text":"' + b"y" * 300 + b'"}]'  # a 2-byte length
    data = server_frame(MESSAGE_NEW) + server_frame(long_text)
    for cut in range(1, len(data)):
        events.heard.clear()
        connection.receive_data(data[:cut])
        connection.receive_data(data[cut:])
        assert events.heard == [("message_new", MESSAGE_NEW), ("message_new", long_text)]


def test_several_frames_in_one_read_are_each_reported(
        connection: ClientConnection, events: Events) -> None:
    presence = b'42["user:online",{"userId":3}]'
    data = (server_frame(MESSAGE_NEW) + server_frame(b'43[{"ok":true}]'.replace(b"3", b"30", 1))
            + server_frame(presence) + server_frame(b'42["typing",{}]'))
    connection.receive_data(data)
    assert events.heard == [
        ("message_new", MESSAGE_NEW), ("answered", 0, {"ok": True}),
        ("other_event", presence), ("other_event", b'42["typing",{}]'),
    ]


def test_a_fragmented_text_message_is_one_packet(
        connection: ClientConnection, events: Events) -> None:
    connection.receive_data(server_frame(MESSAGE_NEW[:10], first=0x01))  # text, not final
    connection.receive_data(server_frame(b"2", first=0x89))  # a ping between fragments
    connection.receive_data(server_frame(MESSAGE_NEW[10:], first=0x80))  # final continuation
    assert events.heard == [("message_new", MESSAGE_NEW)]
    assert unmasked(connection.data_to_send()) == (0x80 | PONG, b"2")


def test_binary_messages_are_ignored(connection: ClientConnection, events: Events) -> None:
    connection.receive_data(server_frame(MESSAGE_NEW, first=0x82))
    assert events.heard == []


def test_an_oversized_frame_fails_before_it_is_buffered(connection: ClientConnection) -> None:
    header = bytes((0x81, 127)) + (MAX_FRAME_BYTES + 1).to_bytes(8, "big")
    assert connection.receive_data(header) is True
    assert connection.failure == "frame too large"


def test_a_masked_frame_from_the_server_fails_the_connection(
        connection: ClientConnection) -> None:
    connection.receive_data(bytes((0x81, 0x80 | 2)) + b"\x00\x00\x00\x0042")
    assert connection.failure == "the server masked a frame"


def test_pings_are_answered_at_both_layers(connection: ClientConnection) -> None:
    assert connection.receive_data(server_frame(b"hi", first=0x80 | PING)
                                   + server_frame(b"2")) is True
    owed = connection.data_to_send()
    pong = control_frame(PONG, b"hi")
    assert owed == pong + text_frame(b"3")
    assert unmasked(owed[:len(pong)]) == (0x80 | PONG, b"hi")
    assert connection.data_to_send() == b""


def test_a_close_is_answered_and_ends_the_parsing(
        connection: ClientConnection, events: Events) -> None:
    assert connection.receive_data(server_frame(b"\x03\xe8bye", first=0x80 | CLOSE)
                                   + server_frame(MESSAGE_NEW)) is True
    assert connection.close_received and connection.failure is None
    assert unmasked(connection.data_to_send()) == (0x80 | CLOSE, b"\x03\xe8")
    assert events.heard == []


def test_the_handshake_steps_are_reported(connection: ClientConnection, events: Events) -> None:
    connection.receive_data(server_frame(b'0{"sid":"a"}') + server_frame(b"40")
                            + server_frame(b'42["authenticated",{"userId":1}]'))
    assert events.heard == [("opened",), ("connected",), ("authenticated",)]
    assert unmasked(connection.authenticate("tok")) == (0x81, b'40{"token":"tok"}')


@pytest.mark.parametrize(("packet", "failure"), [
    (b'44{"message":"x","data":{"code":"AUTH_FAILED"}}', "AUTH_FAILED"),
    (b"41", "disconnected by the server"),
    (b"1", "closed by the server"),
])
def test_a_refusal_or_goodbye_from_the_server_fails_the_connection(
        connection: ClientConnection, packet: bytes, failure: str) -> None:
    assert connection.receive_data(server_frame(packet)) is True
    assert connection.failure == failure


def test_an_auth_error_event_refuses_the_handshake_and_is_recorded(
        connection: ClientConnection, events: Events) -> None:
    connection.receive_data(server_frame(b'42["error",{"code":"AUTH_FAILED"}]'))
    assert events.heard == [("refused", "AUTH_FAILED"),
                            ("error_event", {"code": "AUTH_FAILED"})]
    assert not connection.done  # the server says goodbye itself


def test_a_message_send_ack_goes_to_the_recorder_and_a_call_ack_to_the_session(
        connection: ClientConnection, events: Events) -> None:
    call_id, call = connection.call("conversation:join", {"conversationId": 9})
    assert unmasked(call) == (0x81, b'420["conversation:join",{"conversationId":9}]')
    send = connection.message_send(9, 4, 2, 77, b"run", 123456789)
    assert unmasked(send) == (0x81, b'421["message:send",{"conversationId":9,'
                                    b'"text":"2:123456789","messageId":"run.77"}]')
    connection.receive_data(server_frame(b'431[{"ok":true}]')
                            + server_frame(b'430[{"ok":false,"error":{"code":"FORBIDDEN"}}]'))
    assert events.heard == [
        ("message_acked", (2, 77, 4, 123456789), {"ok": True}),
        ("answered", call_id, {"ok": False, "error": {"code": "FORBIDDEN"}}),
    ]
    assert connection.pending == {}


def test_goodbye_is_a_disconnect_then_a_normal_close(events: Events) -> None:
    connection = ClientConnection("h", "/", KEY, events, events)
    assert connection.goodbye() == b""  # nothing to say before the upgrade
    connection.receive_data(UPGRADE)
    goodbye = connection.goodbye()
    assert unmasked(goodbye[:6 + 2]) == (0x81, b"41")
    assert unmasked(goodbye[8:]) == (0x80 | CLOSE, b"\x03\xe8")


def test_text_frames_take_the_length_form_their_size_needs() -> None:
    for size, header in ((125, 2), (126, 4), (65535, 4), (65536, 10)):
        frame = text_frame(b"x" * size)
        assert len(frame) == header + 4 + size
        assert unmasked(frame) == (0x81, b"x" * size)


def test_urls_and_reply_codes() -> None:
    assert websocket_url("https://h:1/") == "wss://h:1/socket.io/?EIO=4&transport=websocket"
    assert websocket_url("http://h") == "ws://h/socket.io/?EIO=4&transport=websocket"
    assert reply_code({"ok": True}) is None
    assert reply_code({"ok": False, "error": {"code": "FORBIDDEN"}}) == "FORBIDDEN"
    assert reply_code(None) == "UNKNOWN"
