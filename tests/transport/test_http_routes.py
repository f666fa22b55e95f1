"""/health, /status and /metrics."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import pytest

from ecigdis_ws.storage.sqlite import sqlite_path
from tests.support import RunningServer
from tests.transport.conftest import room

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]


async def get(server: RunningServer, path: str) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as http, http.get(server.url + path) as response:
        text = await response.text()
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body, text


async def test_health_is_ok_with_the_database_connected(server: RunningServer) -> None:
    status, body, _ = await get(server, "/health")
    assert status == 200
    assert body["status"] == "ok" and body["database"] == "connected"
    assert body["redis"] == "disabled" and body["uptime"] >= 0


@pytest.mark.backends("sqlite")  # MariaDB faults: tests/storage/test_mariadb_faults.py
async def test_health_is_503_while_the_database_cannot_write(make_server: ServerFactory) -> None:
    async with make_server(DB_TIMEOUT_MS="200") as server:
        blocker = sqlite3.connect(sqlite_path(server.settings.database_url), timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            status, body, _ = await get(server, "/health")
        finally:
            blocker.rollback()
            blocker.close()
        assert status == 503
        assert body["status"] == "degraded" and body["database"] == "disconnected"
        status, body, _ = await get(server, "/health")
        assert status == 200 and body["database"] == "connected"


async def test_status_counts_clients_and_users(server: RunningServer) -> None:
    await server.client(1)
    await server.client(1)
    await server.client(2)
    await server.client()
    status, body, _ = await get(server, "/status")
    assert status == 200
    assert body["connectedClients"] == 4 and body["uniqueUsers"] == 2
    assert body["serverId"] == server.chat.server_id and body["version"] == "0.1.0"


async def test_metrics_count_events_messages_deliveries_errors_and_latency(
    server: RunningServer,
) -> None:
    conversation, (alice, bob, cy) = await room(server, 1, 2, 3)
    await alice.call("message:send", {"conversationId": conversation, "text": "hi",
                                      "messageId": "a"})
    await alice.call("message:send", {"conversationId": conversation, "text": "",
                                      "messageId": "b"})
    await bob.wait_for("message:new")
    await cy.wait_for("message:new")
    status, _, text = await get(server, "/metrics")
    assert status == 200
    lines = set(text.splitlines())
    assert "ecigdis_ws_messages_stored_total 1.0" in lines
    assert 'ecigdis_ws_events_received_total{event="message:send"} 2.0' in lines
    assert 'ecigdis_ws_events_received_total{event="conversation:join"} 3.0' in lines
    assert 'ecigdis_ws_errors_total{code="INVALID_PAYLOAD"} 1.0' in lines
    assert "ecigdis_ws_message_send_latency_seconds_count 1.0" in lines
    assert "ecigdis_ws_connections 3.0" in lines
    assert "ecigdis_ws_authenticated_users 3.0" in lines
    _, figures, _ = await get(server, "/metrics?format=json")
    assert figures["ecigdis_ws_messages_stored_total"] == 1.0
    assert figures["ecigdis_ws_errors_total"] == {"code=INVALID_PAYLOAD": 1.0}
    # user:joined to the earlier joiners (1 + 2), user:online (0 + 1 + 2), message:new (2)
    assert figures["ecigdis_ws_deliveries_total"] == 8.0


async def test_metrics_report_the_processes_resident_memory(server: RunningServer) -> None:
    await server.client(1)
    _, figures, _ = await get(server, "/metrics?format=json")
    resident = figures["process_resident_memory_bytes"]
    assert isinstance(resident, float) and resident > 10 * 2**20  # a Python server: > 10 MiB
