"""What one Engine.IO session may hold, bounded where it is held (polling.py, websocket.py).

Each test is one of the second hardening probe's findings (docs/security.md), run
through the real server with a client that breaks the rules the way the probe did:
upgrades that never finish, a polling client that never fetches, PONGs that answer
no PING, overlapping polls, and frames queued faster than they are served."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest
from structlog.testing import capture_logs

from ecigdis_ws.bench.wire import control_frame
from ecigdis_ws.transport.socketio_overrides.inbound import MAX_PENDING_FRAMES
from ecigdis_ws.transport.socketio_overrides.server import SOCKET_SERVER
from tests.support import WAIT_S, RunningServer
from tests.transport.conftest import PollingClient, RawSocket, room

pytestmark = pytest.mark.backends("sqlite")

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]
UPGRADE_TIMEOUT_S = 10.0  # UPGRADE_TIMEOUT_MS's default
AUTH_TIMEOUT_S = 10.0  # AUTH_TIMEOUT_MS's default
SLOW_CLIENT = "disconnected a client that reads too slowly"


async def closed_by_server(raw: RawSocket, within: float = WAIT_S) -> bool:
    """Whether the server ends the connection (EOF or reset) within `within`."""
    try:
        while await asyncio.wait_for(raw.reader.read(65536), within):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def sessions(server: RunningServer) -> dict[str, object]:
    sockets: dict[str, object] = server.app[SOCKET_SERVER].eio.sockets
    return sockets


# -- upgrades -------------------------------------------------------------------------


async def test_a_second_upgrade_while_one_is_in_progress_is_refused(
    server: RunningServer, session: aiohttp.ClientSession,
) -> None:
    """Before: every upgrade was held 45-55 s; five sessions held 2,028 sockets."""
    polling = await PollingClient.open(server, session)
    first = await RawSocket.websocket(server, polling.upgrade_target())
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(server.url + polling.upgrade_target())
        assert refused.value.status == 400
        assert server.http_connections <= 3  # the polling keep-alive, the first upgrade
    finally:
        first.reset()


async def test_upgrades_waiting_count_against_their_address(
    make_server: ServerFactory, session: aiohttp.ClientSession,
) -> None:
    async with make_server(MAX_UNAUTHENTICATED_PER_IP="3") as server:
        first = await PollingClient.open(server, session)
        waiting = await RawSocket.websocket(server, first.upgrade_target())
        second = await PollingClient.open(server, session)  # three counted now
        assert server.chat.admission.waiting == 2

        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(server.url + second.upgrade_target())
        assert refused.value.status == 429

        waiting.reset()  # the upgrade given up: its place is free again
        await server.wait_until(lambda: server.chat.admission.has_room("127.0.0.1"))
        upgraded = await RawSocket.websocket(server, second.upgrade_target())
        upgraded.reset()


async def test_an_upgrade_that_does_not_finish_in_time_is_given_up(
    make_server: ServerFactory, session: aiohttp.ClientSession,
) -> None:
    async with make_server(AUTH_TIMEOUT_MS="600000") as server:
        polling = await PollingClient.open(server, session)
        waiting = await RawSocket.websocket(server, polling.upgrade_target())
        await server.advance(UPGRADE_TIMEOUT_S - 1)
        assert not await closed_by_server(waiting, within=0.2)

        await server.advance(1)
        assert await closed_by_server(waiting)
        assert polling.sid in sessions(server)  # the session goes on polling
        assert await polling.post("40") == 200


async def test_an_upgrade_ends_with_its_session(
    make_server: ServerFactory, session: aiohttp.ClientSession,
) -> None:
    """Before: the upgrade stayed open after the auth deadline closed its session."""
    async with make_server(UPGRADE_TIMEOUT_MS="600000") as server:
        polling = await PollingClient.open(server, session)
        waiting = await RawSocket.websocket(server, polling.upgrade_target())
        await server.advance(AUTH_TIMEOUT_S)
        assert await closed_by_server(waiting)
        await server.wait_until(lambda: server.chat.admission.waiting == 0)


# -- the outgoing queue and the heartbeat ---------------------------------------------


async def test_a_polling_client_that_never_fetches_is_disconnected(
    make_server: ServerFactory, session: aiohttp.ClientSession,
) -> None:
    """Before: 12,020 packets queued for five such clients after 60 s, and growing."""
    async with make_server(MAX_BUFFERED_PACKETS="16", RATE_LIMIT_MESSAGES="0",
                           RATE_LIMIT_EVENTS="0") as server:
        conversation, (sender,) = await room(server, 1)
        await server.chat.storage.conversations.add_member(conversation, 2, 0)
        polling = await PollingClient.open(server, session)
        await polling.signed_in(2)
        join = json.dumps(["conversation:join", {"conversationId": conversation}])
        assert await polling.post("420" + join) == 200
        status, body = await polling.get()
        assert status == 200 and "430" in body, body

        with capture_logs() as logs:
            for n in range(40):
                reply = await sender.call("message:send", {
                    "conversationId": conversation, "text": f"m{n}", "messageId": f"m{n}"})
                assert reply["ok"]
            await server.wait_until(lambda: server.chat.sessions.count == 1)
        (line,) = [log for log in logs if log["event"] == SLOW_CLIENT]
        assert line["sid"] == polling.sid and line["packets"] == 17
        status, _ = await polling.get()
        assert status == 400  # the session is gone


async def test_a_pong_counts_only_as_the_answer_to_a_ping_the_client_fetched(
    make_server: ServerFactory, session: aiohttp.ClientSession,
) -> None:
    """A polling client that never fetches but POSTs PONGs used to keep its session
    (and its queue) for ever. engineio's polling heartbeat runs on real time."""
    async with make_server(PING_INTERVAL_MS="1000", PING_TIMEOUT_MS="1000") as server:
        polling = await PollingClient.open(server, session)
        await polling.signed_in(1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 6
        while polling.sid in sessions(server) and loop.time() < deadline:
            await polling.post("3")
            await asyncio.sleep(0.3)
        assert polling.sid not in sessions(server)


async def test_a_polling_client_that_answers_its_pings_stays(
    make_server: ServerFactory, session: aiohttp.ClientSession,
) -> None:
    async with make_server(PING_INTERVAL_MS="1000", PING_TIMEOUT_MS="1000") as server:
        polling = await PollingClient.open(server, session)
        await polling.signed_in(1)
        loop = asyncio.get_running_loop()
        until = loop.time() + 3.5
        while loop.time() < until:
            status, body = await polling.get()  # a PING arrives once a second
            assert status == 200, body
            if "2" in body.split("\x1e"):
                assert await polling.post("3") == 200
        assert polling.sid in sessions(server)


async def test_a_second_poll_while_one_waits_closes_the_session(
    server: RunningServer, session: aiohttp.ClientSession,
) -> None:
    """Node's engine.io: "overlap from client". Two polls would share one queue."""
    polling = await PollingClient.open(server, session)
    waiting = asyncio.ensure_future(polling.get())
    await asyncio.sleep(0.2)
    status, _ = await polling.get()
    assert status == 400
    first_status, _ = await asyncio.wait_for(waiting, WAIT_S)
    assert first_status == 200  # answered at once, not at the heartbeat
    assert polling.sid not in sessions(server)


async def test_a_polling_packet_nested_past_the_parser_depth_closes_the_session_quietly(
    server: RunningServer, session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: engineio's decode raised RecursionError, logged with a traceback."""
    polling = await PollingClient.open(server, session)
    assert await polling.post("4" + "[" * 5000 + "]" * 5000) in (200, 400)
    await server.wait_until(lambda: polling.sid not in sessions(server)
                            or sessions(server)[polling.sid].closed)  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.exc_info]


# -- inbound work ---------------------------------------------------------------------


async def test_frames_queued_before_the_client_left_are_not_handled(
    make_server: ServerFactory,
) -> None:
    """Before: 120 queued joins kept a core busy for 110 s after the client left."""
    async with make_server(RATE_LIMIT_MESSAGES="0", RATE_LIMIT_EVENTS="0") as server:
        conversation = await server.conversation(1)
        raw = await RawSocket.signed_in(server, 1)
        await raw.send_text("420" + json.dumps(["conversation:join",
                                                {"conversationId": conversation}]))
        await raw.read_until(b"430")
        sends = [
            "42" + json.dumps(["message:send", {"conversationId": conversation,
                                                "text": f"m{n}", "messageId": f"m{n}"}])
            for n in range(100)
        ]
        await raw.send_text(*sends)
        raw.reset()
        await server.wait_until(lambda: server.chat.sessions.count == 0)
        await asyncio.sleep(0.2)
        stored = await server.chat.storage.messages.messages_after(conversation, 0, 1000)
        assert len(stored) < 20, len(stored)


async def test_more_frames_waiting_than_a_socket_may_have_close_it(
    make_server: ServerFactory,
) -> None:
    async with make_server(RATE_LIMIT_MESSAGES="0", RATE_LIMIT_EVENTS="0") as server:
        conversation = await server.conversation(1)
        raw = await RawSocket.signed_in(server, 1)
        sends = [
            "42" + json.dumps(["message:send", {"conversationId": conversation,
                                                "text": f"m{n}", "messageId": f"m{n}"}])
            for n in range(300)  # (well past MAX_PENDING_FRAMES)
        ]
        assert len(sends) > 2 * MAX_PENDING_FRAMES
        await raw.send_text(*sends)
        assert await closed_by_server(raw)
        await server.wait_until(lambda: server.chat.sessions.count == 0)
        counted = server.chat.metrics.registry.get_sample_value(
            "ecigdis_ws_protocol_errors_total", {"reason": "pending_frames"})
        assert counted == 1
        stored = await server.chat.storage.messages.messages_after(conversation, 0, 1000)
        assert len(stored) < 300


@pytest.mark.parametrize("signed_in", [True, False])
async def test_a_ping_flood_then_a_reset_logs_one_warning_and_no_traceback(
    server: RunningServer, caplog: pytest.LogCaptureFixture, signed_in: bool,
) -> None:
    """Before: aiohttp's "Error handling request" with a traceback, once per connection
    (aiohttp answers each PING inside receive(); the answer to a reset client fails)."""
    floods = [
        await (RawSocket.signed_in(server, 1) if signed_in
               else RawSocket.websocket(server, "/socket.io/?EIO=4&transport=websocket"))
        for _ in range(3)
    ]
    with capture_logs() as logs:
        for _ in range(50):  # 12 MB of PINGs each, never reading the PONGs
            for raw in floods:
                raw.writer.write(control_frame(0x9, b"x" * 125) * 2000)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        for raw in floods:
            raw.reset()
        await server.wait_until(lambda: server.http_connections == 0)
    assert not [r.getMessage() for r in caplog.records if r.exc_info or r.levelname == "ERROR"]
    lost = [log for log in logs if log["event"].startswith("a websocket's connection was lost")]
    assert len(lost) <= len(floods)
