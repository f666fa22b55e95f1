"""The one framer, checked against RFC 6455's own examples (section 5.7)."""

from __future__ import annotations

from ecigdis_ws.websocket_frames import BINARY, PING, TEXT, ZERO_MASK, frame


def test_the_rfcs_unmasked_and_masked_hello() -> None:
    assert frame("Hello") == bytes.fromhex("810548656c6c6f")
    assert frame(b"Hello", TEXT, mask=bytes.fromhex("37fa213d")) == bytes.fromhex(
        "818537fa213d7f9f4d5158")


def test_a_fragment_and_a_ping() -> None:
    assert frame("Hel", final=False) == bytes.fromhex("010348656c")
    assert frame(b"Hello", PING, mask=None) == bytes.fromhex("890548656c6c6f")


def test_lengths_past_125_and_past_65535_take_the_longer_headers() -> None:
    assert frame(b"\x00" * 256)[:4] == bytes.fromhex("827e0100")
    assert frame(b"\x00" * 65536)[:10] == bytes.fromhex("827f0000000000010000")
    assert frame(b"x" * 200, BINARY, ZERO_MASK)[:8] == bytes.fromhex("82fe00c800000000")
