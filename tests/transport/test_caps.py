"""Caps on what one small request can make the server send or hold (issue 13,
finding 8): presence:request answered once and at most PRESENCE_LIST_MAX users,
conversation rooms per socket (MAX_ROOMS_PER_SOCKET), concurrent long-polls per
user (MAX_POLLS_PER_USER). Each attack runs through the real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import jwt
import pytest
import socketio

from ecigdis_ws.transport.rest_routes import REST_API
from ecigdis_ws.transport.socketio_overrides.server import SOCKET_SERVER
from tests.support import WAIT_S, ChatClient, RunningServer
from tests.transport.rest_support import Rest

pytestmark = pytest.mark.backends("sqlite")

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]
SECRET = "test-secret-that-is-long-enough-for-production-use"


class RawSocket:
    """A websocket spoken to at the Socket.IO level, counting what it receives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, server: RunningServer, session: aiohttp.ClientSession,
                   token: str) -> RawSocket:
        ws = await session.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket")
        assert (await ws.receive_str(timeout=WAIT_S)).startswith("0{")
        await ws.send_str("40" + json.dumps({"token": token}))
        raw = cls(ws)
        frames = await raw.until(lambda frame: frame.startswith('42["authenticated"'))
        assert frames[0].startswith("40{")
        return raw

    async def until(self, last: Callable[[str], bool]) -> list[str]:
        """Socket.IO frames received up to and including the one `last` matches
        (Engine.IO heartbeats left out)."""
        frames = []
        while True:
            frame = await self.ws.receive_str(timeout=WAIT_S)
            if frame in ("2", "3"):
                continue
            frames.append(frame)
            if last(frame):
                return frames

    async def answer_to(self, packet: str) -> list[str]:
        """Send `packet`, then an event acked as 999999: everything the server sent
        for `packet` arrives before that ack (one socket's events are handled and
        written in order). The frames before the marker's ack."""
        await self.ws.send_str(packet)
        await self.ws.send_str('42999999["marker"]')
        frames = await self.until(lambda frame: frame.startswith("43999999["))
        return frames[:-1]


# -- presence:request --------------------------------------------------------------


async def test_presence_request_is_answered_once_and_cut_at_presence_list_max(
    make_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    """The probe: with 300 online, one 25-byte request brought the list twice (the
    event and the ack), about 10 KB. Now one frame, of at most PRESENCE_LIST_MAX users."""
    async with make_server(PRESENCE_LIST_MAX="5") as server:
        for user in range(2, 10):
            await server.client(user, "u" * 40)
        mallory = await RawSocket.open(server, session, server.token(1))

        request = '421["presence:request"]'
        frames = await mallory.answer_to(request)

        assert len(frames) == 1 and frames[0].startswith("431["), frames
        [reply] = json.loads(frames[0][3:])
        assert reply["ok"] and reply["truncated"] is True
        assert len(reply["users"]) == reply["count"] == 5
        # 5 users of ~60 bytes: the answer no longer grows with who is online.
        assert len(frames[0].encode()) < 400, len(frames[0].encode())


async def test_presence_request_without_an_ack_gets_the_event_once(
    make_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    async with make_server(PRESENCE_LIST_MAX="5") as server:
        await server.client(2, "Bob")
        alice = await RawSocket.open(server, session, server.token(1))

        frames = await alice.answer_to('42["presence:request"]')

        assert len(frames) == 1 and frames[0].startswith('42["presence:list",'), frames
        listing = json.loads(frames[0][2:])[1]
        assert listing["count"] == 2 and listing["truncated"] is False


# -- rooms per socket --------------------------------------------------------------


async def test_a_socket_cannot_join_more_conversations_than_max_rooms_per_socket(
    make_server: ServerFactory,
) -> None:
    """The probe joined 10,000 rooms in 4 s with open access, each one a membership
    row and a room entry that every disconnect on the node walks."""
    async with make_server(CONVERSATION_ACCESS="open", MAX_ROOMS_PER_SOCKET="5",
                           RATE_LIMIT_EVENTS="0") as server:
        mallory = await server.client(1)
        replies = [await mallory.call("conversation:join", {"conversationId": c})
                   for c in range(1, 9)]

        assert [r["ok"] for r in replies] == [True] * 5 + [False] * 3
        assert {r["error"]["code"] for r in replies[5:]} == {"RATE_LIMITED"}
        manager = server.app[SOCKET_SERVER].manager
        sid = mallory.sio.get_sid()
        assert manager.conversation_rooms[sid] == 5
        assert sum(1 for room in manager.rooms["/"] if str(room).startswith("conversation:")) == 5
        # Refused before open access made a member: no membership rows for 6..8.
        assert await server.chat.storage.conversations.conversation_ids_of(1) == {1, 2, 3, 4, 5}
        # Joining a room it is in still works; leaving one makes room for another.
        assert (await mallory.call("conversation:join", {"conversationId": 3}))["ok"]
        assert (await mallory.call("conversation:leave", {"conversationId": 3}))["ok"]
        assert (await mallory.call("conversation:join", {"conversationId": 7}))["ok"]

        await server.disconnect(mallory)
        assert manager.conversation_rooms == {}


# -- JWT_MAX_TTL_S -----------------------------------------------------------------


async def test_a_token_with_exp_1e30_is_refused_at_the_handshake_by_authenticate_and_rest(
    server: RunningServer, session: aiohttp.ClientSession
) -> None:
    """The probe's token with `exp: 1e30` was accepted: a leaked token for ever."""
    forever = jwt.encode({"userId": 7, "exp": 1e30}, SECRET, algorithm="HS256")

    client = ChatClient(server.url)
    server.clients.append(client)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(token=forever)
    assert client.connect_error["data"]["code"] == "AUTH_FAILED"
    assert server.chat.sessions.count == 0

    anonymous = await server.client()
    reply = await anonymous.call("authenticate", {"token": forever})
    assert reply["error"]["code"] == "AUTH_FAILED"
    assert "JWT_MAX_TTL_S" in reply["error"]["message"]

    answer = await Rest(server, session).get(
        "/conversations", headers={"Authorization": f"Bearer {forever}"})
    assert (answer.status, answer.code) == (401, "AUTH_FAILED")


async def test_a_token_without_exp_is_unaffected_when_exp_is_not_required(
    make_server: ServerFactory,
) -> None:
    async with make_server(JWT_REQUIRE_EXP="false", JWT_MAX_TTL_S="60") as server:
        client = ChatClient(server.url)
        server.clients.append(client)
        await client.connect(token=jwt.encode({"userId": 7}, SECRET, algorithm="HS256"))
        assert await client.wait_for("authenticated") == [{"userId": 7, "name": "7"}]


# -- long-polls per user -----------------------------------------------------------


async def test_long_polls_past_max_polls_per_user_are_refused_429_at_once(
    make_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    """The probe held 400 polls with one token. Real polls are held here (the
    clock does not move), and the one past the cap is answered at once."""
    async with make_server(MAX_POLLS_PER_USER="3") as server:
        rest = Rest(server, session)
        feed = server.app[REST_API].feed
        cursor = (await rest.poll(1)).body["cursor"]
        held = []
        for _ in range(3):
            held.append(asyncio.create_task(rest.poll(1, cursor, wait_s=60)))
            await server.wait_until(lambda: feed.waiting == len(held))

        refused = await rest.poll(1, cursor, wait_s=2)

        assert (refused.status, refused.code) == (429, "RATE_LIMITED")
        assert refused.headers["Retry-After"] == "1"
        assert feed.waiting == 3 and not any(task.done() for task in held)
        other = asyncio.create_task(rest.poll(2, cursor, wait_s=60))  # a cap per user
        await server.wait_until(lambda: feed.waiting == 4)

        await server.advance(server.settings.long_poll_timeout_ms / 1000)
        answers = await asyncio.wait_for(asyncio.gather(*held, other), WAIT_S)
        assert [answer.status for answer in answers] == [200] * 4
        # The held polls gave their places back.
        again = asyncio.create_task(rest.poll(1, cursor, wait_s=60))
        await server.wait_until(lambda: feed.waiting == 1)
        await server.advance(server.settings.long_poll_timeout_ms / 1000)
        assert (await asyncio.wait_for(again, WAIT_S)).status == 200
