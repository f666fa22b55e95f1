"""AdmissionService: a connection counts against its address from its handshake
until its socket authenticates, and is closed if that takes longer than
AUTH_TIMEOUT_MS, whether or not it ever opened a Socket.IO session."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from ecigdis_ws.errors import ChatError
from tests.services.conftest import ServiceHarness

HarnessFactory = Callable[..., AbstractAsyncContextManager[ServiceHarness]]
AUTH_TIMEOUT_S = 10.0  # AUTH_TIMEOUT_MS's default
ADDRESS = "198.51.100.7"


async def test_connections_past_the_per_address_cap_have_no_room(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MAX_UNAUTHENTICATED_PER_IP="2") as harness:
        admission = harness.chat.admission
        await harness.socket(ip=ADDRESS)
        assert admission.has_room(ADDRESS)
        await harness.socket(ip=ADDRESS)

        assert not admission.has_room(ADDRESS)
        assert admission.has_room("198.51.100.8")  # each address on its own
        assert admission.waiting == 2


async def test_a_connection_counts_from_its_handshake_without_any_socket(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MAX_UNAUTHENTICATED_PER_IP="1") as harness:
        harness.chat.admission.arrived("eio-raw", ADDRESS)  # never sends CONNECT

        assert not harness.chat.admission.has_room(ADDRESS)


async def test_authenticating_frees_the_place_and_ends_the_deadline(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MAX_UNAUTHENTICATED_PER_IP="1") as harness:
        sid = await harness.socket(ip=ADDRESS)
        await harness.chat.sessions.authenticate(sid, harness.token(1))

        assert harness.chat.admission.has_room(ADDRESS)
        await harness.advance(AUTH_TIMEOUT_S * 2)
        assert harness.manager.disconnected == []


async def test_a_failed_authentication_keeps_the_place(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MAX_UNAUTHENTICATED_PER_IP="1") as harness:
        sid = await harness.socket(ip=ADDRESS)
        with pytest.raises(ChatError):
            await harness.chat.sessions.authenticate(sid, "not-a-token")

        assert not harness.chat.admission.has_room(ADDRESS)


async def test_a_closed_connection_frees_its_place_and_its_timer(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MAX_UNAUTHENTICATED_PER_IP="1") as harness:
        timers = harness.clock.pending
        sid = await harness.socket(ip=ADDRESS)

        await harness.close(sid)

        assert harness.chat.admission.has_room(ADDRESS)
        assert harness.clock.pending == timers


async def test_a_cap_of_zero_is_no_cap(make_harness: HarnessFactory) -> None:
    async with make_harness(MAX_UNAUTHENTICATED_PER_IP="0") as harness:
        for _ in range(60):  # more than the default cap of 50
            await harness.socket(ip=ADDRESS)

        assert harness.chat.admission.has_room(ADDRESS)


async def test_a_connection_without_a_socket_is_closed_at_its_deadline(
    harness: ServiceHarness,
) -> None:
    closed: list[str] = []

    async def close(connection: str) -> None:
        closed.append(connection)

    harness.chat.admission.close_connection = close
    harness.chat.admission.arrived("eio-raw", ADDRESS)

    await harness.advance(AUTH_TIMEOUT_S - 0.5)
    assert closed == []
    await harness.advance(0.5)

    assert closed == ["eio-raw"]
    assert harness.chat.admission.waiting == 0
