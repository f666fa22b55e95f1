"""`ecigdis-ws check`: every step against a real server, and the hint for each usual failure.

The in-process tests run the check's coroutine against tests/support.py's
RunningServer (on both database backends); the server's ManualClock is not the
wall clock, so their tokens are minted with the server's clock (`server.token`).
The subprocess tests run the `ecigdis-ws check` console script against a real
`ecigdis-ws serve` process, where --user mints a token from the local settings.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import jwt
import pytest
from aiohttp import web

from ecigdis_ws.app import create_app
from ecigdis_ws.clock import ManualClock
from ecigdis_ws.ops.check import STEPS, CheckOptions, StepResult, passed, run_check, summary
from ecigdis_ws.services.auth import mint_token
from tests import support
from tests.backends import unique_prefix
from tests.certificates import self_signed
from tests.deploy.support import cli, server_env, serving
from tests.support import RunningServer, free_port, running_server
from tests.tcp_proxy import TcpProxy

SCRIPT = Path(sys.executable).parent / "ecigdis-ws"
# A whole check against a healthy local server takes milliseconds; against a dead
# one, no step waits longer than the timeout the test passes.
CHECK_TIMEOUT_S = 3.0
CLI_TIMEOUT_S = 60
PORTAL = "https://portal.example.com"

MakeServer = Callable[..., AbstractAsyncContextManager[RunningServer]]


async def check(url: str, **options: object) -> dict[str, StepResult]:
    """Run the check; its results by step name, in order."""
    opts = CheckOptions(url, timeout_s=CHECK_TIMEOUT_S, **options)  # type: ignore[arg-type]
    async with asyncio.timeout(CHECK_TIMEOUT_S * len(STEPS) * 2):
        results = await run_check(opts)
    assert [r.name for r in results] == list(STEPS)
    return {r.name: r for r in results}


def report(results: dict[str, StepResult]) -> str:
    return "\n".join(r.line() for r in results.values())


def all_passed(results: dict[str, StepResult]) -> bool:
    return all(r.passed for r in results.values())


# -- against a running server ------------------------------------------------------------


async def test_every_step_passes_against_a_running_server(server: RunningServer) -> None:
    conversation = await server.conversation(1, 2)
    bob = await server.client(2)
    await bob.call("conversation:join", {"conversationId": conversation})

    results = await check(server.url, token=server.token(1, "Alice"),
                          conversation_id=conversation)

    assert all_passed(results), report(results)
    assert results["connect"].detail.startswith("websocket, server ")
    assert results["authenticate"].detail == "user 1 (Alice)"
    assert "database connected" in results["health"].detail
    # The message really went through the server: the other member received it.
    [message] = await bob.wait_for("message:new")
    assert message["userId"] == 1
    assert message["text"].startswith("ecigdis-ws check from ")
    assert message["messageId"].startswith("check-")


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_every_step_passes_over_one_transport_only(
    server: RunningServer, transport: str
) -> None:
    conversation = await server.conversation(1)
    results = await check(server.url, token=server.token(1), conversation_id=conversation,
                          transport=transport)
    assert all_passed(results), report(results)
    assert results["connect"].detail.startswith(f"{transport}, server ")


async def test_without_a_conversation_join_and_send_are_skipped_and_the_check_passes(
    server: RunningServer,
) -> None:
    results = await check(server.url, token=server.token(1))
    assert results["join"].skipped and results["join"].passed is None
    assert "--conversation" in results["join"].detail
    assert results["send"].skipped
    assert results["presence"].passed is True
    assert passed(list(results.values()))
    assert summary(list(results.values())) == "4 of 6 steps passed, 2 skipped (join, send)"


async def test_without_a_token_the_steps_that_need_one_are_skipped_naming_the_options(
    server: RunningServer,
) -> None:
    results = await check(server.url)
    assert results["connect"].passed is True
    assert results["authenticate"].skipped
    assert "--token" in results["authenticate"].detail
    assert "--user" in results["authenticate"].detail
    assert all(results[name].skipped for name in ("join", "send", "presence"))
    assert results["health"].passed is True
    assert passed(list(results.values()))


# -- the usual failures and their hints ---------------------------------------------------


async def test_stopped_server_fails_connect_with_the_is_it_running_hint() -> None:
    port = free_port()  # nothing listens there
    results = await check(f"http://127.0.0.1:{port}", token="unused", conversation_id=1)
    assert results["connect"].passed is False
    assert results["connect"].detail == f"connection refused by 127.0.0.1:{port}"
    assert "is the server running" in results["connect"].hint
    assert all(results[n].passed is None for n in ("authenticate", "join", "send", "presence"))
    assert results["health"].passed is False
    assert "is the server running" in results["health"].hint


async def test_token_signed_with_another_secret_fails_with_the_jwt_secret_hint(
    server: RunningServer,
) -> None:
    claims = {"userId": 1, "name": "Alice", "exp": int(server.clock.now()) + 600}
    foreign = jwt.encode(claims, "the-portal-has-another-secret-of-enough-length", "HS256")
    results = await check(server.url, token=foreign, conversation_id=1)
    assert results["connect"].passed is True
    assert results["authenticate"].passed is False
    assert results["authenticate"].detail == "AUTH_FAILED: bad signature"
    assert results["authenticate"].hint == (
        "token rejected: JWT_SECRET differs between the token issuer and the server")
    assert results["health"].passed is True


async def test_expired_token_fails_with_the_mint_a_fresh_one_hint(server: RunningServer) -> None:
    expired = server.token(1, ttl_s=60)
    server.clock.advance(3600)
    results = await check(server.url, token=expired)
    assert results["authenticate"].detail == "AUTH_FAILED: token expired"
    assert "mint a fresh one" in results["authenticate"].hint


@pytest.mark.parametrize("transport", ["auto", "polling", "websocket"])
async def test_origin_not_in_cors_origins_fails_connect_with_the_cors_hint(
    make_server: MakeServer, transport: str
) -> None:
    async with make_server(CORS_ORIGINS=PORTAL) as server:
        results = await check(server.url, token=server.token(1), origin="https://evil.example",
                              transport=transport)
    assert results["connect"].passed is False
    assert results["connect"].detail.startswith("HTTP 403"), report(results)
    assert "'https://evil.example' not in CORS_ORIGINS" in results["connect"].hint


async def test_origin_in_cors_origins_passes_every_step(make_server: MakeServer) -> None:
    async with make_server(CORS_ORIGINS=PORTAL) as server:
        conversation = await server.conversation(1)
        results = await check(server.url, token=server.token(1), origin=PORTAL,
                              conversation_id=conversation)
    assert all_passed(results), report(results)


async def test_non_member_fails_join_with_the_add_member_command(server: RunningServer) -> None:
    conversation = await server.conversation(2)
    results = await check(server.url, token=server.token(1), conversation_id=conversation)
    assert results["join"].passed is False
    assert results["join"].detail.startswith("FORBIDDEN")
    assert f"ecigdis-ws conversation add-member {conversation} 1" in results["join"].hint
    assert results["send"].passed is None
    assert results["presence"].passed is True  # asked without the conversation


async def test_database_down_fails_join_and_health_with_the_database_hint(
    tmp_path: Path, mariadb_url: str
) -> None:
    """MariaDB behind a TCP proxy that then refuses connections, as a stopped database."""
    parts = urlsplit(mariadb_url)
    async with TcpProxy(upstream_port=parts.port or 3306) as proxy:
        userinfo = parts.netloc.rpartition("@")[0]
        proxied = urlunsplit((parts.scheme, f"{userinfo}@127.0.0.1:{proxy.port}", parts.path,
                              "", ""))
        env = {"DATABASE_URL": proxied, "DB_TABLE_PREFIX": unique_prefix(),
               "DB_TIMEOUT_MS": "500", "DB_CONNECT_TIMEOUT_MS": "500"}
        async with running_server(tmp_path, **env) as server:
            conversation = await server.conversation(1)
            await proxy.cut("refuse")
            results = await check(server.url, token=server.token(1),
                                  conversation_id=conversation)
    assert results["connect"].passed is True
    # Joining needs the database (a membership check); if a cache answered that,
    # storing the message does.
    failed = [r for r in results.values() if r.passed is False]
    assert failed[0].name in ("join", "send"), report(results)
    assert failed[0].detail.startswith("UNAVAILABLE")
    assert "cannot reach its database" in failed[0].hint
    assert results["health"].passed is False
    assert results["health"].detail == (
        "HTTP 503 degraded: database disconnected, redis disabled")
    assert "cannot reach its database" in results["health"].hint


@asynccontextmanager
async def answering(status: int) -> AsyncIterator[str]:
    """A real HTTP server answering every request with `status`, as nginx does when
    its upstream nodes are down (502) or when it has no location for the path (404)."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, text=f"<html>{status}</html>",
                            content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_proxy_without_a_running_node_fails_with_the_upstream_hint() -> None:
    async with answering(502) as url:
        results = await check(url, token="unused")
    assert results["connect"].detail == "HTTP 502"
    assert "got no answer from a server node" in results["connect"].hint
    assert results["health"].detail == "HTTP 502"
    assert "got no answer from a server node" in results["health"].hint


async def test_url_without_socket_io_fails_with_the_path_hint() -> None:
    async with answering(404) as url:
        results = await check(url, token="unused")
    assert results["connect"].detail == "HTTP 404"
    assert "nothing serves /socket.io/ at this URL" in results["connect"].hint
    assert results["health"].detail == "HTTP 404, not the chat server's /health"


# -- TLS ----------------------------------------------------------------------------------


@asynccontextmanager
async def https_server(tmp_path: Path) -> AsyncIterator[tuple[str, Path, str]]:
    """The real app over TLS with a self-signed certificate: (url, cert, a token)."""
    cert, key = self_signed(tmp_path)
    settings = support.test_settings(tmp_path)
    clock = ManualClock()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(create_app(settings, clock), handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = runner.addresses[0][1]
        yield f"https://127.0.0.1:{port}", cert, mint_token(settings, clock, 1, "A", 600)
    finally:
        await runner.cleanup()


async def test_untrusted_certificate_fails_with_the_ca_hint_and_passes_with_ca_file(
    tmp_path: Path,
) -> None:
    async with https_server(tmp_path) as (url, cert, token):
        untrusted = await check(url, token=token)
        trusted = await check(url, token=token, ca_file=str(cert))
    assert untrusted["connect"].detail == "TLS certificate rejected: self-signed certificate"
    assert "--ca-file" in untrusted["connect"].hint
    assert trusted["connect"].passed is True, report(trusted)
    assert trusted["authenticate"].passed is True
    assert trusted["health"].passed is True


async def test_plain_http_to_a_tls_port_hints_at_https(tmp_path: Path) -> None:
    async with https_server(tmp_path) as (url, _, token):
        results = await check(url.replace("https://", "http://"), token=token)
    assert results["connect"].passed is False
    assert "use https://" in results["connect"].hint


async def test_https_to_a_plain_port_hints_that_it_does_not_speak_tls(
    server: RunningServer,
) -> None:
    results = await check(server.url.replace("http://", "https://"))
    assert results["connect"].detail.startswith("TLS handshake failed")
    assert "does this port speak TLS?" in results["connect"].hint


# -- the console script -------------------------------------------------------------------


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), "check", *args], env=env, cwd=env["HOME"],
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)


def test_cli_exits_0_with_six_passed_lines_against_serve(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    cli(env, "migrate")
    conversation = cli(env, "conversation", "create", "--title", "checks",
                       "--members", "7").strip()
    with serving(env) as node:
        # --user mints the token with this environment's JWT_SECRET, as the server has.
        done = run_cli(env, node.url, "--user", "7", "--conversation", conversation)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"ecigdis-ws check {node.url}"
    assert [line.split()[:2] for line in lines[1:7]] == [["✓", step] for step in STEPS]
    assert lines[-1] == "all 6 steps passed"


def test_cli_exits_1_with_the_refused_hint_when_nothing_listens(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    done = run_cli(server_env(tmp_path), f"http://127.0.0.1:{port}", "--token", "x",
                   "--timeout", "3")
    assert done.returncode == 1, done.stdout + done.stderr
    [connect] = [line for line in done.stdout.splitlines() if line[2:].startswith("connect ")]
    assert connect.startswith("✗ connect")
    assert "connection refused" in connect
    assert "is the server running" in connect
    assert done.stdout.splitlines()[-1].startswith("check failed: 0 of 6 steps passed")
    assert time.monotonic() - started < CLI_TIMEOUT_S / 2


def test_cli_user_with_another_local_secret_exits_1_with_the_secret_hint(
    tmp_path: Path,
) -> None:
    env = server_env(tmp_path, MIGRATE_ON_START="true")
    with serving(env) as node:
        other = {**env, "JWT_SECRET": "a-different-secret-that-is-also-long-enough-xyz"}
        done = run_cli(other, node.url, "--user", "7")
    assert done.returncode == 1
    assert ("JWT_SECRET differs between the token issuer and the server" in done.stdout), (
        done.stdout)


def test_cli_without_a_conversation_exits_0_naming_the_skipped_steps(tmp_path: Path) -> None:
    env = server_env(tmp_path, MIGRATE_ON_START="true")
    with serving(env) as node:
        done = run_cli(env, node.url, "--user", "7")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:3] for line in lines[3:5]] == [
        ["-", "join", "skipped:"], ["-", "send", "skipped:"]]
    assert "--conversation" in lines[3]
    assert lines[-1] == "4 of 6 steps passed, 2 skipped (join, send)"


def test_cli_whose_reader_goes_away_exits_quietly(tmp_path: Path) -> None:
    """`ecigdis-ws check URL | head -1`: no BrokenPipeError traceback, SIGPIPE's status."""
    # A port that accepts and never answers: the connect line comes only after the
    # step's timeout, surely after the reader has gone.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with subprocess.Popen([str(SCRIPT), "check", url, "--timeout", "1"],
                              env=server_env(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) as process:
            assert process.stdout is not None and process.stderr is not None
            assert process.stdout.readline() == f"ecigdis-ws check {url}\n"
            process.stdout.close()  # as `head -1` does; the next line has no reader
            stderr = process.stderr.read()
            returncode = process.wait(timeout=CLI_TIMEOUT_S)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert returncode == 128 + signal.SIGPIPE


def test_cli_user_with_invalid_local_settings_exits_2_naming_them(tmp_path: Path) -> None:
    env = {**server_env(tmp_path), "WS_PORT": "abc"}
    done = run_cli(env, "http://127.0.0.1:1", "--user", "7")
    assert done.returncode == 2
    assert "WS_PORT='abc'" in done.stderr
    assert done.stdout == ""


def test_cli_refuses_a_url_that_is_not_http(tmp_path: Path) -> None:
    done = run_cli(server_env(tmp_path), "127.0.0.1:8080", "--token", "x")
    assert done.returncode == 2
    assert "expected an http:// or https:// URL" in done.stderr
