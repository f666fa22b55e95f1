"""/health, /status and /metrics."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import pytest

from ecigdis_ws.storage.mariadb import MariaDbTarget
from ecigdis_ws.storage.sqlite import sqlite_path
from tests.backends import connect
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


@pytest.mark.backends("sqlite")  # MariaDB: test_health_ignores_locks_held_on_mariadb
@pytest.mark.parametrize("path", ["/health", "/metrics"])
async def test_health_and_metrics_answer_at_once_while_another_process_holds_the_writer(
    make_server: ServerFactory, path: str
) -> None:
    """They took BEGIN IMMEDIATE per request: a flood of public /health queued sends
    behind it (1.3 -> 36 ms median), and a held write lock made them 503."""
    async with make_server(DB_TIMEOUT_MS="2000") as server:
        conversation, [alice] = await room(server, 1)
        blocker = sqlite3.connect(sqlite_path(server.settings.database_url), timeout=0)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            status, body, text = await get(server, path + "?format=json")
            seconds = time.monotonic() - started
            # (the writer is really held: a send waits for it, and gives up)
            failed = await alice.call("message:send", {
                "conversationId": conversation, "text": "x", "messageId": "held"})
        finally:
            blocker.rollback()
            blocker.close()
        assert status == 200, text
        assert seconds < 1.0  # well inside DB_TIMEOUT_MS: it waited for nothing
        if path == "/health":
            assert body["status"] == "ok" and body["database"] == "connected"
        else:
            assert body["ecigdis_ws_dependency_up"] == {"dependency=database": 1.0}
        assert failed["error"]["code"] == "UNAVAILABLE"


@pytest.mark.backends("mariadb")
async def test_health_ignores_locks_held_on_mariadb(server: RunningServer) -> None:
    """Another connection's table locks and open write transaction on the chat's
    tables do not block /health: its probe is a SELECT 1 naming no table, outside
    any transaction."""
    await server.conversation(1, 2)
    prefix = server.settings.db_table_prefix
    url = server.settings.database_url
    other = connect(url, MariaDbTarget.from_url(url).database)
    locker = connect(url, MariaDbTarget.from_url(url).database)
    try:
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(f"UPDATE {prefix}members SET joined_at_ms = 0")
        with locker.cursor() as cursor:
            cursor.execute(f"LOCK TABLES {prefix}conversations WRITE, "
                           f"{prefix}schema_migrations WRITE")
        started = time.monotonic()
        status, body, _ = await get(server, "/health")
        seconds = time.monotonic() - started
    finally:
        locker.close()
        other.close()
    assert status == 200 and body["database"] == "connected"
    assert seconds < 1.0


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
    # user:joined to the earlier joiners (1 + 2), user:online (0 + 1 + 2), message:new (2),
    # and the error event of the invalid send (1): every event to a socket is a delivery
    assert figures["ecigdis_ws_deliveries_total"] == 9.0


async def test_metrics_report_the_processes_resident_memory(server: RunningServer) -> None:
    await server.client(1)
    _, figures, _ = await get(server, "/metrics?format=json")
    resident = figures["process_resident_memory_bytes"]
    assert isinstance(resident, float) and resident > 10 * 2**20  # a Python server: > 10 MiB
