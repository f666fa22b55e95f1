"""USE_HTTPS: https and wss on the same port, checked by a client that verifies."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import jwt
import pytest
import socketio

from tests.certificates import self_signed
from tests.support import free_port

SECRET = "tls-test-secret-that-is-long-enough-for-production"
CLI = str(Path(sys.executable).with_name("ecigdis-ws"))
START_TIMEOUT_S = 15


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost; the test trusts it."""
    return self_signed(tmp_path)


def serve_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "NODE_ENV": "production",
        "JWT_SECRET": SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'tls.db'}",
        "MIGRATE_ON_START": "true",
        "WS_HOST": "127.0.0.1",
        "WS_PORT": str(port),
        **extra,
    }


@pytest.fixture
def https_server(tmp_path: Path, certificate: tuple[Path, Path]) -> Iterator[int]:
    cert_path, key_path = certificate
    port = free_port()
    env = serve_env(tmp_path, port, USE_HTTPS="true", CERT_PATH=str(cert_path),
                    KEY_PATH=str(key_path))
    process = subprocess.Popen([CLI, "serve"], env=env, cwd=tmp_path,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                pytest.fail(f"serve exited: {process.stderr.read() if process.stderr else ''}")
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=15)


def trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    return context


async def test_https_health_and_wss_socket_verify_against_the_certificate(
    https_server: int, certificate: tuple[Path, Path]
) -> None:
    connector = aiohttp.TCPConnector(ssl=trusting(certificate))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(f"https://127.0.0.1:{https_server}/health") as response:
            assert response.status == 200
        client = socketio.AsyncClient(http_session=http, reconnection=False)
        received: list[object] = []
        client.on("authenticated", received.append)
        token = jwt.encode({"sub": "1", "name": "Ana", "exp": int(time.time()) + 60}, SECRET)
        await client.connect(f"https://127.0.0.1:{https_server}", auth={"token": token},
                             transports=["websocket"], wait_timeout=5)
        try:
            assert client.transport() == "websocket"
            reply = await client.call("presence:request", timeout=5)
            assert reply["ok"] and reply["count"] == 1
        finally:
            await client.disconnect()
        assert received == [{"userId": 1, "name": "Ana"}]


async def test_a_client_that_does_not_trust_the_certificate_is_refused(
    https_server: int,
) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await http.get(f"https://127.0.0.1:{https_server}/health")


@pytest.mark.parametrize("which", ["CERT_PATH", "KEY_PATH"])
def test_missing_certificate_file_is_a_startup_error_naming_the_path(
    tmp_path: Path, certificate: tuple[Path, Path], which: str
) -> None:
    cert_path, key_path = certificate
    paths = {"CERT_PATH": str(cert_path), "KEY_PATH": str(key_path)}
    paths[which] = str(tmp_path / "missing.pem")
    env = serve_env(tmp_path, free_port(), USE_HTTPS="true", **paths)
    result = subprocess.run([CLI, "serve"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode != 0
    assert str(tmp_path / "missing.pem") in result.stderr
