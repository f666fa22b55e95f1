"""message:send: store, acknowledge, fan out; idempotency, validation, failures, order."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from ecigdis_ws.storage.sqlite import sqlite_path
from tests.support import RunningServer
from tests.transport.conftest import room

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]


async def stored(server: RunningServer, conversation: int) -> list[str]:
    return [m.text for m in await server.chat.storage.messages.messages_after(
        conversation, 0, 10_000
    )]


def message(conversation: int, text: str = "hello", message_id: Any = "m1") -> dict[str, Any]:
    return {"conversationId": conversation, "text": text, "messageId": message_id}


async def test_send_is_acknowledged_and_fanned_out(server: RunningServer) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    ack = await alice.call("message:send", message(conversation, "Hi Bob 👋"))
    assert ack["ok"] is True and ack["status"] == "sent"
    assert ack["messageId"] == "m1" and ack["conversationId"] == conversation
    assert isinstance(ack["id"], int) and ack["createdAt"] == "2027-01-15T08:00:00.000Z"
    assert "duplicate" not in ack
    [event_ack] = await alice.wait_for("message:ack")
    assert event_ack == {k: v for k, v in ack.items() if k != "ok"}
    [new] = await bob.wait_for("message:new")
    assert new == {
        "id": ack["id"], "messageId": "m1", "conversationId": conversation, "userId": 1,
        "senderName": "user1", "text": "Hi Bob 👋", "createdAt": ack["createdAt"],
    }


async def test_sender_socket_is_excluded_but_own_other_sockets_receive(
    server: RunningServer,
) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    alice_phone = await server.client(1)
    await alice_phone.call("conversation:join", {"conversationId": conversation})
    await alice.call("message:send", message(conversation))
    await bob.wait_for("message:new")
    await alice_phone.wait_for("message:new")
    await bob.call("message:send", message(conversation, "sentinel", "b1"))
    [only] = await alice.wait_for("message:new")
    assert only["text"] == "sentinel"


async def test_same_message_id_is_stored_and_fanned_out_once(server: RunningServer) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    first = await alice.call("message:send", message(conversation, "once", "dup"))
    again = await alice.call("message:send", message(conversation, "twice?", "dup"))
    assert again["duplicate"] is True
    assert {k: again[k] for k in ("id", "createdAt", "conversationId", "messageId")} == {
        k: first[k] for k in ("id", "createdAt", "conversationId", "messageId")
    }
    await alice.call("message:send", message(conversation, "sentinel", "s"))
    texts = [m["text"] for m in await bob.wait_for("message:new", count=2)]
    assert texts == ["once", "sentinel"]
    assert await stored(server, conversation) == ["once", "sentinel"]


async def test_message_ids_compare_as_text_across_conversations(server: RunningServer) -> None:
    conversation, (alice,) = await room(server, 1)
    other = await server.conversation(1)
    first = await alice.call("message:send", message(conversation, "number", 5))
    again = await alice.call("message:send", message(other, "string", "5"))
    assert first["messageId"] == 5  # echoed as sent
    assert again["duplicate"] is True and again["conversationId"] == conversation
    assert again["messageId"] == "5"
    assert await stored(server, other) == []


async def test_same_message_id_from_another_user_is_a_new_message(server: RunningServer) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    a = await alice.call("message:send", message(conversation, "from alice", "x"))
    b = await bob.call("message:send", message(conversation, "from bob", "x"))
    assert a["id"] != b["id"] and "duplicate" not in b


INVALID_SENDS: list[tuple[str, Any]] = [
    ("no payload", None),
    ("not an object", "hello"),
    ("no conversationId", {"text": "hi", "messageId": "a"}),
    ("conversationId zero", {"conversationId": 0, "text": "hi", "messageId": "a"}),
    ("conversationId boolean", {"conversationId": True, "text": "hi", "messageId": "a"}),
    ("conversationId text", {"conversationId": "one", "text": "hi", "messageId": "a"}),
    ("conversationId huge", {"conversationId": 2**70, "text": "hi", "messageId": "a"}),
    ("text missing", {"conversationId": "CONV", "messageId": "a"}),
    ("text a number", {"conversationId": "CONV", "text": 42, "messageId": "a"}),
    ("text empty", {"conversationId": "CONV", "text": "", "messageId": "a"}),
    ("text blank", {"conversationId": "CONV", "text": " \n\t ", "messageId": "a"}),
    ("text too long", {"conversationId": "CONV", "text": "x" * 4001, "messageId": "a"}),
    ("text lone surrogate", {"conversationId": "CONV", "text": "a\ud800b", "messageId": "a"}),
    ("messageId missing", {"conversationId": "CONV", "text": "hi"}),
    ("messageId object", {"conversationId": "CONV", "text": "hi", "messageId": {"a": 1}}),
    ("messageId boolean", {"conversationId": "CONV", "text": "hi", "messageId": False}),
    ("messageId empty", {"conversationId": "CONV", "text": "hi", "messageId": ""}),
    ("messageId too long", {"conversationId": "CONV", "text": "hi", "messageId": "m" * 65}),
]


@pytest.mark.parametrize(("case", "payload"), INVALID_SENDS, ids=[c for c, _ in INVALID_SENDS])
async def test_invalid_send_is_refused_and_nothing_stored_or_fanned_out(
    server: RunningServer, case: str, payload: Any
) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    if isinstance(payload, dict) and payload.get("conversationId") == "CONV":
        payload = {**payload, "conversationId": conversation}
    reply = await alice.call("message:send", payload)
    assert reply["ok"] is False and reply["error"]["code"] == "INVALID_PAYLOAD", case
    [error] = await alice.wait_for("error")
    assert error["code"] == "INVALID_PAYLOAD" and error["event"] == "message:send"
    [failed] = await alice.wait_for("message:ack")
    assert failed["status"] == "failed" and failed["error"]["code"] == "INVALID_PAYLOAD"
    await alice.call("message:send", message(conversation, "sentinel", "ok"))
    [only] = await bob.wait_for("message:new")
    assert only["text"] == "sentinel"
    assert await stored(server, conversation) == ["sentinel"]


async def test_text_of_exactly_the_limit_is_accepted(server: RunningServer) -> None:
    conversation, (alice,) = await room(server, 1)
    ack = await alice.call("message:send", message(conversation, "é" * 4000))
    assert ack["ok"]


async def test_failed_ack_echoes_the_client_message_id(server: RunningServer) -> None:
    conversation, (alice,) = await room(server, 1)
    await alice.call("message:send", message(conversation, "", "keep-me"))
    [failed] = await alice.wait_for("message:ack")
    assert failed["messageId"] == "keep-me"


async def test_non_member_send_is_forbidden_and_not_stored(server: RunningServer) -> None:
    conversation, (alice,) = await room(server, 1)
    mallory = await server.client(9)
    reply = await mallory.call("message:send", message(conversation, "let me in"))
    assert reply["error"]["code"] == "FORBIDDEN"
    [failed] = await mallory.wait_for("message:ack")
    assert failed == {"messageId": "m1", "status": "failed", "error": reply["error"]}
    assert await stored(server, conversation) == []
    assert alice.received("message:new") == []


@pytest.mark.backends("sqlite")  # MariaDB faults: tests/storage/test_mariadb_faults.py
async def test_database_unavailable_fails_the_send_and_stores_nothing(
    make_server: ServerFactory,
) -> None:
    # A second: every write of this server has it, its set-up's too, and 300 ms was
    # once too little for creating the conversation on a loaded machine.
    async with make_server(DB_TIMEOUT_MS="1000") as server:
        conversation, (alice, bob) = await room(server, 1, 2)
        blocker = sqlite3.connect(sqlite_path(server.settings.database_url), timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            started = asyncio.get_running_loop().time()
            reply = await alice.call("message:send", message(conversation, "lost?", "u1"))
            elapsed = asyncio.get_running_loop().time() - started
        finally:
            blocker.rollback()
            blocker.close()
        assert reply["error"]["code"] == "UNAVAILABLE"
        assert elapsed < 3.0  # at the deadline, not whenever the lock goes
        [failed] = await alice.wait_for("message:ack")
        assert failed["status"] == "failed" and failed["error"]["code"] == "UNAVAILABLE"
        assert await stored(server, conversation) == []
        retry = await alice.call("message:send", message(conversation, "lost?", "u1"))
        assert retry["ok"] and "duplicate" not in retry
        [new] = await bob.wait_for("message:new")
        assert new["id"] == retry["id"]


async def test_one_sockets_messages_keep_their_order(make_server: ServerFactory) -> None:
    async with make_server(RATE_LIMIT_MESSAGES="0", RATE_LIMIT_EVENTS="0") as server:
        await _burst_keeps_order(server)


async def _burst_keeps_order(server: RunningServer) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    acks: list[Any] = []
    done = asyncio.Event()

    def on_ack(reply: Any) -> None:
        acks.append(reply)
        if len(acks) == 30:
            done.set()

    for i in range(30):  # fired without waiting for acks: the server must keep the order
        await alice.sio.emit("message:send", message(conversation, f"n{i}", f"o{i}"),
                             callback=on_ack)
    await asyncio.wait_for(done.wait(), 5)
    received = await bob.wait_for("message:new", count=30)
    assert [m["text"] for m in received] == [f"n{i}" for i in range(30)]
    ids = [m["id"] for m in received]
    assert ids == sorted(ids)
    assert [a["messageId"] for a in acks] == [f"o{i}" for i in range(30)]


async def test_sending_ends_the_senders_typing(server: RunningServer) -> None:
    conversation, (alice, bob) = await room(server, 1, 2)
    await alice.call("typing:start", {"conversationId": conversation})
    await alice.call("message:send", message(conversation))
    indicators = await bob.wait_for("typing:indicator", count=2)
    assert [i["isTyping"] for i in indicators] == [True, False]
    assert bob.sequence.index("message:new") < len(bob.sequence) - 1 - bob.sequence[
        ::-1
    ].index("typing:indicator")
