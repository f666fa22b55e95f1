"""SIGTERM mid-traffic: every acknowledged message is stored, and the process
exits 0 within SHUTDOWN_TIMEOUT_MS."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import socketio

from tests.support import free_port

SECRET = "shutdown-test-secret-long-enough-for-production"
CLI = str(Path(sys.executable).with_name("ecigdis-ws"))
SENDERS = 4
MESSAGES_PER_SENDER = 400
SHUTDOWN_TIMEOUT_S = 5


def token(user_id: int) -> str:
    return jwt.encode({"sub": str(user_id), "exp": int(time.time()) + 600}, SECRET)


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    conversation: int
    database: Path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    database = tmp_path / "chat.db"
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""), "NODE_ENV": "production", "JWT_SECRET": SECRET,
        "DATABASE_URL": f"sqlite:///{database}", "MIGRATE_ON_START": "true",
        "WS_HOST": "127.0.0.1", "WS_PORT": str(port), "RATE_LIMIT_EVENTS": "0",
        "RATE_LIMIT_MESSAGES": "0", "SHUTDOWN_TIMEOUT_MS": str(SHUTDOWN_TIMEOUT_S * 1000),
    }
    subprocess.run([CLI, "migrate"], env=env, cwd=tmp_path, check=True, capture_output=True)
    created = subprocess.run(
        [CLI, "conversation", "create", "--title", "t", "--members",
         ",".join(str(u) for u in range(1, SENDERS + 1))],
        env=env, cwd=tmp_path, check=True, capture_output=True, text=True)
    process = subprocess.Popen([CLI, "serve"], env=env, cwd=tmp_path,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield Served(process, port, int(created.stdout), database)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_sigterm_mid_traffic_loses_no_acknowledged_message(served: Served) -> None:
    clients: list[socketio.AsyncClient] = []
    acks: list[dict[str, Any]] = []
    enough = asyncio.Event()

    def on_ack(reply: dict[str, Any]) -> None:
        acks.append(reply)
        if len(acks) >= 100:
            enough.set()

    async def stream(user: int, client: socketio.AsyncClient) -> None:
        for i in range(MESSAGES_PER_SENDER):
            if not client.connected:
                return
            await client.emit("message:send", {
                "conversationId": served.conversation, "text": f"{user}-{i}",
                "messageId": f"{user}-{i}"}, callback=on_ack)
            await asyncio.sleep(0.002)

    try:
        for user in range(1, SENDERS + 1):
            client = socketio.AsyncClient(reconnection=False)
            await client.connect(f"http://127.0.0.1:{served.port}",
                                 auth={"token": token(user)}, transports=["websocket"],
                                 wait_timeout=5)
            await client.call("conversation:join", {"conversationId": served.conversation},
                              timeout=5)
            clients.append(client)
        senders = [asyncio.create_task(stream(u, c)) for u, c in enumerate(clients, start=1)]
        await asyncio.wait_for(enough.wait(), 10)
        served.process.send_signal(signal.SIGTERM)  # with sends still streaming in
        started = time.monotonic()
        returncode = await asyncio.to_thread(served.process.wait, SHUTDOWN_TIMEOUT_S + 10)
        assert returncode == 0
        assert time.monotonic() - started < SHUTDOWN_TIMEOUT_S + 5
        await asyncio.wait_for(asyncio.gather(*senders, return_exceptions=True), 10)
    finally:
        for client in clients:
            if client.connected:
                await client.disconnect()
    sent = {a["messageId"]: a["id"] for a in acks if a.get("status") == "sent"}
    failed = [a for a in acks if a.get("status") != "sent"]
    assert sent, "the server acknowledged nothing before stopping"
    assert all(a["error"]["code"] == "UNAVAILABLE" for a in failed)
    with sqlite3.connect(served.database) as db:
        stored = dict(db.execute("SELECT client_message_id, id FROM chat_messages").fetchall())
    missing = {mid for mid in sent if stored.get(mid) != sent[mid]}
    assert not missing, f"acknowledged but not stored: {sorted(missing)[:5]}"


async def test_a_rest_send_in_flight_at_sigterm_completes_before_the_sockets_close(
    served: Served,
) -> None:
    """REST requests are inside the drain, as socket events are: a send whose body
    is still arriving when SIGTERM comes is stored, answered 201 and delivered to
    the sockets of the conversation before their transports are closed."""
    received: list[dict[str, Any]] = []
    listener = socketio.AsyncClient(reconnection=False)
    listener.on("message:new", received.append)
    await listener.connect(f"http://127.0.0.1:{served.port}", auth={"token": token(2)},
                           transports=["websocket"], wait_timeout=5)
    await listener.call("conversation:join", {"conversationId": served.conversation}, timeout=5)
    body = json.dumps({"messageId": "rest-at-sigterm", "text": "sent as it stops"}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        writer.write(
            f"POST /api/messenger/conversations/{served.conversation}/messages HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {token(1)}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:10])
        await writer.drain()
        await asyncio.sleep(0.5)  # the request is being handled, waiting for its body
        served.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.0)  # the server is stopping meanwhile
        writer.write(body[10:])
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), SHUTDOWN_TIMEOUT_S + 5)
        returncode = await asyncio.to_thread(served.process.wait, SHUTDOWN_TIMEOUT_S + 10)
    finally:
        writer.close()
        if listener.connected:
            await listener.disconnect()
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    assert returncode == 0
    assert [m["messageId"] for m in received] == ["rest-at-sigterm"]
    with sqlite3.connect(served.database) as db:
        stored = db.execute("SELECT text FROM chat_messages WHERE client_message_id = ?",
                            ("rest-at-sigterm",)).fetchall()
    assert stored == [("sent as it stops",)]
