"""A bounded, seeded fuzz run over the Engine.IO/Socket.IO packet parsing and the
REST bodies, through the real server (issue 25).

Each run draws the same examples (hypothesis, derandomized), starting from a corpus
of every input the two hardening probes found harmful: deep nesting, packet types
the protocol lacks, binary markers, ack ids past 16 digits, reserved event names,
bodies that are not UTF-8. The property is the one docs/security.md promises: any
input gets an answer or a closed connection, the server stays up for others, and no
traceback or ERROR reaches the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecigdis_ws.transport.protocol_errors import (
    engineio_problem,
    polling_body_problem,
    socketio_problem,
)
from tests.support import WAIT_S, RunningServer, server_log_problems
from tests.transport.conftest import HYPOTHESIS, PollingClient, on_loop, socketio_connected
from tests.transport.rest_support import USER_API

pytestmark = pytest.mark.backends("sqlite")

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]

DEEP = 1100  # past orjson's 1,024 levels and the stdlib parser's recursion limit
PACKET_CORPUS = [
    "", "9hello", "b4aGVsbG8=", "\x00", "4\x00", "42", "42[", "42{}", "42[]", "42[1]",
    '42["connect"]', '42["disconnect"]', '42["*"]', '42["newListener",1]',
    "42" + "9" * 40 + '["presence:request"]', "451-" + '["x",{"_placeholder":true}]',
    "42/admin,[\"x\"]", "4/", "4" + "[" * DEEP + "]" * DEEP,
    "42" + "[" * DEEP + "]" * DEEP, "42[" + '{"a":' * DEEP + "1" + "}" * DEEP + "]",
    '42["message:send",' + '{"a":' * 600 + "1" + "}" * 600 + "]",
    "2probe", "3probe", "5", "6", "1", "0", "40" + "[" * DEEP,
    '42["conversation:join",{"conversationId":1,"since":' + "9" * 5000 + "}]",
]
REST_CORPUS = [
    b"[" * DEEP + b"]" * DEEP, b'{"text":' * DEEP, b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    b"\xff\xfe", b"", b"null", b"1" * 5000, b'{"text":"\\ud800"}', b'{"text":1e999}',
    b'{"messageId":' + b"9" * 5000 + b"}", b'{"text":"x","messageId":{"$gt":""}}',
]
PREFIXES = ["", "0", "1", "2", "3", "4", "40", "41", "42", "43", "44", "45", "46",
            "4/x,", "420", "43" + "1" * 17, "5", "6", "7", "b"]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def packets() -> st.SearchStrategy[str]:
    """Engine.IO packets: the corpus, a protocol prefix with anything after it, or
    nesting at every depth around the parsers' limits."""
    return st.one_of(
        st.sampled_from(PACKET_CORPUS),
        st.builds(lambda prefix, rest: prefix + rest, st.sampled_from(PREFIXES),
                  st.text(max_size=120)),
        st.builds(lambda prefix, depth: prefix + nested(depth), st.sampled_from(["4", "42"]),
                  st.integers(900, 4000)),
    )


def rest_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from(REST_CORPUS),
        st.binary(max_size=200),
        st.integers(900, 4000).map(lambda depth: nested(depth).encode()),
        st.text(max_size=200).map(str.encode),
    )


@settings(HYPOTHESIS, max_examples=400)
@given(st.one_of(packets(), st.binary(max_size=64).map(lambda b: b.decode("latin-1"))))
def test_the_packet_checks_answer_every_input_without_raising(text: str) -> None:
    """The checks run before engineio or socketio decode anything: each returns a
    reason or None, for anything at all."""
    engineio_problem(text)
    engineio_problem(text.encode())
    socketio_problem(text)
    polling_body_problem(text.encode("utf-8", "surrogatepass"))


async def still_serving(server: RunningServer) -> None:
    """Another user's client still gets its answers."""
    client = await server.client(9, "bystander")
    assert (await client.call("presence:request"))["ok"]
    await server.disconnect(client)


async def test_fuzzed_websocket_frames_get_an_answer_or_a_close_and_no_traceback(
    server: RunningServer, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    loop = asyncio.get_running_loop()

    ran: list[str] = []

    async def example(text: str) -> None:
        ran.append(text)
        async with aiohttp.ClientSession() as http:
            ws = await socketio_connected(server, http, server.token(1))
            await ws.send_str(text)
            await ws.send_str('421["presence:request"]')
            while True:  # an answer to the probe, or the connection closed
                message = await ws.receive(timeout=WAIT_S)
                if message.type is not aiohttp.WSMsgType.TEXT or message.data.startswith("431"):
                    break
            await ws.close()

    @settings(HYPOTHESIS, max_examples=80)
    @given(packets())
    def property_holds(text: str) -> None:
        on_loop(loop, example(text))

    await asyncio.to_thread(property_holds)
    assert len(set(ran)) >= 60  # (the examples did run)
    await still_serving(server)
    assert server_log_problems(caplog.records) == []


async def test_fuzzed_polling_bodies_get_an_answer_and_no_traceback(
    server: RunningServer, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    loop = asyncio.get_running_loop()

    ran: list[list[str]] = []

    async def example(body: list[str]) -> None:
        ran.append(body)
        async with aiohttp.ClientSession() as http:
            polling = await PollingClient.open(server, http)
            await polling.signed_in(1)
            status = await polling.post(*body)
            assert status in (200, 400), status

    @settings(HYPOTHESIS, max_examples=40)
    @given(st.lists(packets(), min_size=1, max_size=4))
    def property_holds(body: list[str]) -> None:
        on_loop(loop, example(body))

    await asyncio.to_thread(property_holds)
    assert len(ran) >= 30
    await still_serving(server)
    assert server_log_problems(caplog.records) == []


async def test_fuzzed_rest_bodies_are_answered_4xx_and_no_traceback(
    make_server: ServerFactory, session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with make_server(RATE_LIMIT_MESSAGES="0", RATE_LIMIT_EVENTS="0",
                           RATE_LIMIT_CONVERSATIONS="0") as server:
        await fuzz_rest(server, session)
    assert server_log_problems(caplog.records) == []


async def fuzz_rest(server: RunningServer, session: aiohttp.ClientSession) -> None:
    """Bodies to every POST route of the user API, as a member (rate limits off, so
    each body reaches its parsing)."""
    loop = asyncio.get_running_loop()
    conversation = await server.conversation(1, 2)
    paths = [
        USER_API + "/conversations",
        f"{USER_API}/conversations/{conversation}/messages",
        f"{USER_API}/conversations/{conversation}/read",
        f"{USER_API}/conversations/{conversation}/typing",
        f"{USER_API}/conversations/{conversation}/messages/1/reactions",
    ]
    headers = {"Authorization": f"Bearer {server.token(1)}",
               "Content-Type": "application/json"}

    async def example(path: str, body: bytes) -> None:
        async with session.post(server.url + path, data=body, headers=headers) as response:
            answer = await response.read()
            assert response.status < 500, (response.status, answer[:200])

    @settings(HYPOTHESIS, max_examples=80)
    @given(st.sampled_from(paths), rest_bodies())
    def property_holds(path: str, body: bytes) -> None:
        on_loop(loop, example(path, body))

    await asyncio.to_thread(property_holds)
    for body in REST_CORPUS[:3]:  # the deep bodies of the probe: a 400, as on the socket
        async with session.post(server.url + paths[1], data=body, headers=headers) as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "INVALID_PAYLOAD"
