"""REST requests are inside the shutdown drain (transport/drain.py), as socket
events are: one in flight completes, one that comes while draining is refused
with UNAVAILABLE before anything is stored. The SIGTERM of a real process is
tests/test_shutdown.py."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from ecigdis_ws.transport.app_keys import IN_FLIGHT
from tests.support import WAIT_S, RunningServer
from tests.transport.conftest import room
from tests.transport.rest_support import Rest


async def slow_send(
    server: RunningServer, conversation: int, message_id: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A REST send whose head is in and whose body is not all there yet: the rest
    of the body is returned, for the test to write when it likes."""
    body = json.dumps({"messageId": message_id, "text": "in flight"}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"POST /api/messenger/conversations/{conversation}/messages HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {server.token(1)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[:10]
    )
    await writer.drain()
    return reader, writer, body[10:]


async def test_a_rest_request_in_flight_holds_the_drain_and_a_new_one_is_refused(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    rest = Rest(server, session)
    conversation, (alice, bob) = await room(server, 1, 2)
    in_flight = server.app[IN_FLIGHT]
    reader, writer, rest_of_body = await slow_send(server, conversation, "slow")
    await server.wait_until(lambda: in_flight.running == 1)
    drain = asyncio.create_task(in_flight.drain(WAIT_S))
    await server.wait_until(lambda: in_flight.draining)

    refused = await rest.send(1, conversation, "too late", "late")
    assert (refused.status, refused.code) == (503, "UNAVAILABLE")
    socket_refused = await alice.call("message:send", {
        "conversationId": conversation, "text": "too late too", "messageId": "late2"})
    assert socket_refused["error"]["code"] == "UNAVAILABLE"  # the same rule
    assert not drain.done()

    writer.write(rest_of_body)
    await writer.drain()
    head = await asyncio.wait_for(reader.readline(), WAIT_S)
    assert head.startswith(b"HTTP/1.1 201"), head
    assert await asyncio.wait_for(drain, WAIT_S) is True
    [new] = await bob.wait_for("message:new")
    assert new["messageId"] == "slow"
    stored = await server.chat.storage.messages.messages_after(conversation, 0, 10)
    assert [message.text for message in stored] == ["in flight"]
    writer.close()
