"""The asyncio adapter over the sans-I/O connection (bench/client.py), on a fake
transport: what the connection owes is written, and a broken stream is dropped."""

from __future__ import annotations

from typing import Any

from ecigdis_ws.bench.client import WireClient
from ecigdis_ws.bench.connection import ClientConnection
from ecigdis_ws.bench.wire import control_frame
from ecigdis_ws.websocket_frames import PING, PONG
from tests.bench.test_wire import KEY, UPGRADE, Events, server_frame


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.state = "open"

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.state != "open"

    def close(self) -> None:
        self.state = "closed"

    def abort(self) -> None:
        self.state = "aborted"


class Recorder(Events):
    def disconnected(self, client: Any) -> None:
        self.heard.append(("disconnected",))


def upgraded_client() -> tuple[WireClient, FakeTransport]:
    client = WireClient(0, "token", 1, 9, Recorder())
    client.connection = ClientConnection("h", "/", KEY, client.recorder, client)
    client._receive = client.connection.receive_data
    transport = FakeTransport()
    client.connection_made(transport)  # type: ignore[arg-type]
    client.data_received(UPGRADE)
    return client, transport


async def test_a_ping_is_answered_on_the_transport() -> None:
    client, transport = upgraded_client()
    client.data_received(server_frame(b"x", first=0x80 | PING))
    assert transport.written[-1] == control_frame(PONG, b"x")


async def test_a_broken_stream_is_aborted_with_its_reason() -> None:
    client, transport = upgraded_client()
    client.data_received(bytes((0x81, 0x82)) + b"\x00\x00\x00\x0042")
    assert transport.state == "aborted" and client.closed
    client.connection_lost(None)
    # open() would raise ConnectFailed with the reason the connection gave
    assert client._opened.result() == "the server masked a frame"


async def test_a_close_from_the_server_closes_the_transport() -> None:
    client, transport = upgraded_client()
    client.data_received(server_frame(b"\x03\xe8", first=0x88))
    assert transport.state == "closed"
