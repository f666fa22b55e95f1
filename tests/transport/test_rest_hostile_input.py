"""REST input a hostile client controls, through the real server (issue 25,
points 5 and 6): JSON nested past the parser's depth is 400 INVALID_PAYLOAD as
on the socket, and any bytes in `X-API-Key` or a Bearer token are a wrong key or
token (401), never a 500, and no traceback reaches the log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import orjson
import pytest

from tests.support import WAIT_S, RunningServer, server_log_problems
from tests.transport.rest_support import SERVER_API, SERVER_API_KEY, USER_API, Rest

# Nothing here touches the database beyond creating a conversation: one backend.
pytestmark = pytest.mark.backends("sqlite")

DEPTH = 1100  # past orjson's 1024 and the stdlib's recursion limit (1000)
DEEP_BODIES = {
    "arrays": "[" * DEPTH + "]" * DEPTH,  # 2,200 bytes, as the probe sent
    "objects": '{"a":' * DEPTH + "1" + "}" * DEPTH,
    # a run of 19 digits sends the body straight to the stdlib's reader
    "arrays-long-integer": "[" * DEPTH + "1234567890123456789" + "]" * DEPTH,
    # a lone surrogate: orjson refuses it, and the stdlib fallback would recurse
    "objects-lone-surrogate": '{"t":"\\ud800","a":' + "[" * DEPTH + "]" * DEPTH + "}",
}
PROBLEM_LEVELS = ("[warning", "[error", "[critical")
ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]


def problems(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the server logged at WARNING or above, or with a traceback: its own
    structlog lines (printed) and library records (aiohttp's)."""
    output = capsys.readouterr()
    printed = [line for line in (output.out + output.err).splitlines()
               if "Traceback" in line or any(level in line for level in PROBLEM_LEVELS)]
    return printed + server_log_problems(caplog.records, logging.WARNING)


async def raw_request(server: RunningServer, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 request written byte for byte (an HTTP client would refuse
    to send a header that is not ASCII): the status and the body answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(head + b"Host: x\r\nConnection: close\r\n"
                     + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), WAIT_S)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def error_code(body: bytes) -> str:
    code: str = orjson.loads(body)["error"]["code"]
    return code


@pytest.mark.parametrize("body", list(DEEP_BODIES.values()), ids=list(DEEP_BODIES))
async def test_json_nested_past_the_parser_depth_is_400_invalid_payload(
    keyed: Rest, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, body: str
) -> None:
    server = keyed.server
    conversation = await server.conversation(1, 2)
    headers = {"Content-Type": "application/json"}
    with caplog.at_level(logging.DEBUG):
        for path, user, key in (
            (f"{USER_API}/conversations/{conversation}/messages", 1, {}),
            (f"{USER_API}/conversations", 1, {}),
            (f"{SERVER_API}/conversations/{conversation}/messages", None,
             {"X-API-Key": SERVER_API_KEY}),
        ):
            reply = await keyed.request("POST", path, user=user, data=body,
                                        headers={**headers, **key})
            assert (reply.status, reply.code) == (400, "INVALID_PAYLOAD"), (path, reply.body)
            assert "nested deeper than 1024" in reply.body["error"]["message"]
        # the server goes on: a good body is stored
        assert (await keyed.send(1, conversation, "still here", "m-1")).status == 201
    assert problems(capsys, caplog) == []


async def test_dev_token_reads_its_body_with_the_same_reader(
    make_server: ServerFactory,
    session: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """POST /dev/token caps its body at 1 KiB, so it cannot nest past 512 levels;
    nested as deep as it may, and past its cap, it is a 400 / 413, never a 500."""
    async with make_server(NODE_ENV="development") as server:
        with caplog.at_level(logging.DEBUG):
            for body, status in (("[" * 512 + "]" * 512, 400), ("[" * DEPTH + "]" * DEPTH, 413),
                                 ('{"name": ' + "9" * 1000 + "}", 400)):
                async with session.post(server.url + "/dev/token", data=body) as reply:
                    assert reply.status == status
                    assert (await reply.json())["error"]["code"] == "INVALID_PAYLOAD"
    assert problems(capsys, caplog) == []


async def test_dev_token_reads_a_body_that_arrives_in_pieces(make_server: ServerFactory) -> None:
    """One read() may return part of a body; the whole body is read (issue 26)."""
    async with make_server(NODE_ENV="development") as server:
        body = b'{"name": "Piecemeal", "ttlS": 600}'
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /dev/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body[:9])
        await writer.drain()
        await asyncio.sleep(0.3)  # the server has read the first piece by now
        writer.write(body[9:])
        answer = await asyncio.wait_for(reader.read(), WAIT_S)
        writer.close()
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), answer[:300]
        assert orjson.loads(payload)["token"]


WRONG_KEYS = {
    "non-ascii": b"\xff\xfe",
    "utf-8-text": "cl\u00e9-du-site".encode(),
    "the-key-then-a-high-byte": SERVER_API_KEY.encode() + b"\x80",
    "latin-1-of-the-key": SERVER_API_KEY.encode("latin-1").replace(b"k", b"\xeb"),
}


@pytest.mark.parametrize("key", list(WRONG_KEYS.values()), ids=list(WRONG_KEYS))
async def test_any_bytes_in_x_api_key_are_a_wrong_key(
    keyed: Rest, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, key: bytes
) -> None:
    server = keyed.server
    conversation = await server.conversation(1)
    with caplog.at_level(logging.DEBUG):
        for head in (
            b"POST %s/conversations/%d/messages HTTP/1.1\r\n" % (SERVER_API.encode(), conversation),
            b"POST %s/conversations/%d/members HTTP/1.1\r\n" % (SERVER_API.encode(), conversation),
            b"DELETE %s/conversations/%d/members/1 HTTP/1.1\r\n" % (SERVER_API.encode(),
                                                                    conversation),
        ):
            status, body = await raw_request(
                server, head + b"X-API-Key: " + key + b"\r\nContent-Type: application/json\r\n",
                b'{"text": "x", "messageId": "a", "userId": 1}',
            )
            assert (status, error_code(body)) == (401, "AUTH_FAILED"), body
        # the right key still works
        status, _ = await raw_request(
            server,
            b"POST %s/conversations/%d/messages HTTP/1.1\r\n" % (SERVER_API.encode(), conversation)
            + b"X-API-Key: " + SERVER_API_KEY.encode() + b"\r\n",
            b'{"text": "x", "messageId": "a"}',
        )
        assert status == 201
    assert problems(capsys, caplog) == []


@pytest.mark.parametrize("token", [b"\xff\xfe", b"eyJ\xc3\xa9.e30.x", b"\x80" * 300],
                         ids=["non-ascii", "utf-8-in-a-jwt", "high-bytes"])
async def test_any_bytes_in_a_bearer_token_are_a_wrong_token(
    server: RunningServer,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    token: bytes,
) -> None:
    with caplog.at_level(logging.DEBUG):
        status, body = await raw_request(
            server, b"GET " + USER_API.encode() + b"/conversations HTTP/1.1\r\n"
            + b"Authorization: Bearer " + token + b"\r\n",
        )
    assert (status, error_code(body)) == (401, "AUTH_FAILED")
    assert problems(capsys, caplog) == []


async def test_any_bytes_in_a_handshake_bearer_token_are_a_refused_connect(
    server: RunningServer,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The socket's handshake reads the same header (auth.token aside, and the
    URL's query never): its CONNECT is refused AUTH_FAILED, as any wrong token."""
    with caplog.at_level(logging.DEBUG):
        status, body = await raw_request(
            server, b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n"
            + b"Authorization: Bearer \xff\xfe\r\n",
        )
        assert status == 200, body
        sid = orjson.loads(body[1:])["sid"].encode()
        status, _ = await raw_request(
            server, b"POST /socket.io/?EIO=4&transport=polling&sid=" + sid + b" HTTP/1.1\r\n"
            + b"Content-Type: text/plain\r\n", b"40",
        )
        assert status == 200
        status, body = await raw_request(
            server, b"GET /socket.io/?EIO=4&transport=polling&sid=" + sid + b" HTTP/1.1\r\n",
        )
    assert body.startswith(b"44") and b"AUTH_FAILED" in body, body
    assert problems(capsys, caplog) == []
