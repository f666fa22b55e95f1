"""deploy/nginx/ecigdis-ws.conf, run by a real nginx in front of two real server nodes.

The test renders the shipped file by replacing exactly the strings in PLACEHOLDERS
(also listed in the file's header): the listen directives become free loopback ports,
the two upstream servers become two `ecigdis-ws serve` nodes started here on one
SQLite database, and the certificate paths become a self-signed certificate made
here. Everything else, TLS, the upgrade map, ip_hash, timeouts and headers, is the
shipped text. A minimal nginx.conf in a scratch directory includes it (pid, logs
and temp paths in the scratch directory, `daemon off`), and nginx runs in the
foreground with `-p <scratch> -c <that file>`.

Clients then chat through nginx over https, trusting the test certificate: python-
socketio with long polling only, and with websocket only. The polling run crosses
several HTTP requests, which only works because ip_hash keeps them on one node; the
same file with ip_hash removed shows that.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from tests.certificates import self_signed
from tests.deploy.support import (
    DEPLOY,
    Node,
    apt_tool,
    cli,
    free_port,
    run_bounded,
    server_env,
    serving,
    token,
)

SHIPPED = DEPLOY / "nginx" / "ecigdis-ws.conf"
CERT_PATH = "/etc/letsencrypt/live/chat.example.com/fullchain.pem"
KEY_PATH = "/etc/letsencrypt/live/chat.example.com/privkey.pem"
# The only strings the test changes in the shipped file.
PLACEHOLDERS = ("listen 80;", "listen 443 ssl;", "127.0.0.1:8081", "127.0.0.1:8082",
                CERT_PATH, KEY_PATH)
NGINX_TIMEOUT_S = 30
NGINX_UP_TIMEOUT_S = 10
NGINX_STOP_TIMEOUT_S = 10
CLIENT_TIMEOUT_S = 5
LOG_WAIT_S = 5
ALICE = 1


# -- rendering ---------------------------------------------------------------------------------


def render(text: str, values: dict[str, str]) -> str:
    assert set(values) == set(PLACEHOLDERS)
    for placeholder in PLACEHOLDERS:
        assert placeholder in text, f"{placeholder!r} is not in {SHIPPED.name}"
        text = text.replace(placeholder, values[placeholder])
    return text


def wrapper(scratch: Path, site: Path) -> str:
    """The nginx.conf that runs `site` with everything else in `scratch`."""
    temp = scratch / "temp"
    return f"""
# Workers as root as well: pytest's temporary directories (0700) are closed to nobody.
user root;
daemon off;
worker_processes 1;
pid {scratch}/nginx.pid;
error_log {scratch}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {scratch}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {site};
}}
"""


# -- running nginx -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Proxy:
    """nginx running the rendered file."""

    https_port: int
    http_port: int
    scratch: Path
    site: Path
    ca: Path
    nodes: tuple[Node, Node]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def access_log(self) -> str:
        return (self.scratch / "access.log").read_text(encoding="utf-8")


def nginx_command(nginx: str, scratch: Path, *args: str) -> list[str]:
    return [nginx, "-p", str(scratch), "-c", str(scratch / "nginx.conf"), *args]


def nginx_test(nginx: str, scratch: Path) -> subprocess.CompletedProcess[str]:
    return run_bounded(nginx_command(nginx, scratch, "-t"), NGINX_TIMEOUT_S)


def https_get(url: str, context: ssl.SSLContext) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contextlib.contextmanager
def running_nginx(
    nginx: str, scratch: Path, nodes: tuple[Node, Node], text: str | None = None
) -> Iterator[Proxy]:
    """nginx with the shipped file (or `text`) rendered for `nodes`, in the foreground."""
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "temp").mkdir(exist_ok=True)
    cert, key = self_signed(scratch)
    https_port, http_port = free_port(), free_port()
    site = scratch / "ecigdis-ws.conf"
    site.write_text(render(text or SHIPPED.read_text(encoding="utf-8"), {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "127.0.0.1:8081": f"127.0.0.1:{nodes[0].port}",
        "127.0.0.1:8082": f"127.0.0.1:{nodes[1].port}",
        CERT_PATH: str(cert),
        KEY_PATH: str(key),
    }), encoding="utf-8")
    (scratch / "nginx.conf").write_text(wrapper(scratch, site), encoding="utf-8")
    checked = nginx_test(nginx, scratch)
    assert checked.returncode == 0, checked.stderr
    with (scratch / "nginx.stderr").open("wb") as log:
        process = subprocess.Popen(nginx_command(nginx, scratch), stdout=log, stderr=log)
    proxy = Proxy(https_port, http_port, scratch, site, cert, nodes)
    try:
        deadline = time.monotonic() + NGINX_UP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                logs = [scratch / "nginx.stderr", scratch / "error.log"]
                pytest.fail(f"nginx exited {process.returncode}:\n" + "".join(
                    path.read_text(encoding="utf-8") for path in logs if path.is_file()))
            try:
                if https_get(f"{proxy.url}/health", proxy.ssl_context())[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"nginx did not answer in {NGINX_UP_TIMEOUT_S} s")
            time.sleep(0.1)
        yield proxy
    finally:
        # SIGTERM: nginx's fast shutdown (SIGQUIT would wait for open websockets).
        process.terminate()
        try:
            process.wait(timeout=NGINX_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def nginx() -> str:
    return apt_tool("nginx", "nginx")


@dataclass(frozen=True)
class Cluster:
    nodes: tuple[Node, Node]
    conversation_id: int


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two nodes on one migrated SQLite database, with a conversation Alice is in."""
    workdir = tmp_path_factory.mktemp("nginx-nodes")
    env = server_env(workdir, TRUST_PROXY="true", MIGRATE_ON_START="false")
    cli(env, "migrate")
    conversation = int(cli(env, "conversation", "create", "--title", "Ops", "--members", "1,2"))
    with serving(env, "node-a") as first, serving(env, "node-b") as second:
        yield Cluster((first, second), conversation)


@pytest.fixture(scope="module")
def proxy(
    nginx: str, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    with running_nginx(nginx, tmp_path_factory.mktemp("nginx"), cluster.nodes) as running:
        yield running


# -- the configuration -------------------------------------------------------------------------


def test_rendered_file_differs_from_the_shipped_one_only_in_the_placeholders(
    proxy: Proxy,
) -> None:
    shipped = SHIPPED.read_text(encoding="utf-8").splitlines()
    rendered = proxy.site.read_text(encoding="utf-8").splitlines()
    assert len(shipped) == len(rendered)
    changed = [(old, new) for old, new in zip(shipped, rendered, strict=True) if old != new]
    assert changed
    for old, new in changed:
        assert any(placeholder in old for placeholder in PLACEHOLDERS), (old, new)
        assert "127.0.0.1:" in new or str(proxy.scratch) in new, new


def test_nginx_t_accepts_the_rendered_file_and_rejects_a_broken_one(
    nginx: str, proxy: Proxy, tmp_path: Path
) -> None:
    checked = nginx_test(nginx, proxy.scratch)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr
    # The same check fails when a directive is broken: nginx -t is not a formality.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "temp").mkdir()
    site = broken / "ecigdis-ws.conf"
    site.write_text(proxy.site.read_text(encoding="utf-8").replace(
        "proxy_read_timeout 75s;", "proxy_read_timeout seventy-five;"), encoding="utf-8")
    (broken / "nginx.conf").write_text(wrapper(broken, site), encoding="utf-8")
    failed = nginx_test(nginx, broken)
    assert failed.returncode != 0
    assert "proxy_read_timeout" in failed.stderr


def test_health_through_https(proxy: Proxy) -> None:
    status, body = https_get(f"{proxy.url}/health", proxy.ssl_context())
    assert status == 200
    assert '"database": "connected"' in body


def test_plain_http_redirects_to_https(proxy: Proxy) -> None:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(f"http://127.0.0.1:{proxy.http_port}/socket.io/?EIO=4", timeout=2)
    assert caught.value.code == 301
    assert caught.value.headers["Location"].startswith("https://127.0.0.1/socket.io/")


def test_other_paths_are_not_proxied(proxy: Proxy) -> None:
    assert https_get(f"{proxy.url}/anything", proxy.ssl_context())[0] == 404


# -- chatting through nginx --------------------------------------------------------------------


@dataclass
class Client:
    sio: Any  # socketio.AsyncClient, which has no type hints
    greetings: list[Any]  # the `connected` events: { serverId, timestamp }


@contextlib.asynccontextmanager
async def client_through(
    proxy: Proxy, transports: list[str], wait_timeout: float = CLIENT_TIMEOUT_S
) -> AsyncIterator[Client]:
    """A python-socketio client connected through nginx as Alice, trusting the test CA."""
    connector = aiohttp.TCPConnector(ssl=proxy.ssl_context())
    async with aiohttp.ClientSession(connector=connector) as http:
        client = Client(socketio.AsyncClient(reconnection=False, http_session=http,
                                             handle_sigint=False), [])
        client.sio.on("connected", client.greetings.append)
        await client.sio.connect(proxy.url, auth={"token": token(ALICE, "Alice")},
                                 transports=transports, wait_timeout=wait_timeout)
        try:
            yield client
        finally:
            await client.sio.disconnect()


async def logged(proxy: Proxy, matches: Callable[[str], bool], count: int = 1) -> list[str]:
    """The access log lines that match, once there are `count` (or after LOG_WAIT_S)."""
    deadline = time.monotonic() + LOG_WAIT_S
    while True:
        lines = [line for line in proxy.access_log().splitlines() if matches(line)]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_send_a_message_through_nginx(
    proxy: Proxy, cluster: Cluster, transport: str
) -> None:
    async with client_through(proxy, [transport]) as client:
        sio = client.sio
        assert sio.transport() == transport
        joined = await sio.call("conversation:join", {"conversationId": cluster.conversation_id},
                                timeout=CLIENT_TIMEOUT_S)
        assert joined["ok"] is True, joined
        ack = await sio.call("message:send", {
            "conversationId": cluster.conversation_id,
            "text": f"hello through nginx over {transport}",
            "messageId": f"nginx-{transport}-{time.time_ns()}",
        }, timeout=CLIENT_TIMEOUT_S)
        assert ack["ok"] is True, ack
        assert ack["status"] == "sent", ack
        # The node that answered is one of the two behind the upstream.
        server_ids = {greeting["serverId"] for greeting in client.greetings}
        assert len(server_ids) == 1
        assert server_ids.pop().rsplit(":", 1)[-1] in {str(n.port) for n in cluster.nodes}
    # nginx logs a request when it ends: a websocket once its connection has closed,
    # which may be a moment after disconnect() returned.
    if transport == "websocket":
        upgraded = await logged(proxy, lambda line: "transport=websocket" in line
                                and '" 101 ' in line)
        assert len(upgraded) == 1
    else:
        # One session over several requests (open, connect, join, send, the acks).
        answered = await logged(proxy, lambda line: "transport=polling" in line
                                and "sid=" in line and '" 200 ' in line, count=3)
        assert len(answered) >= 3


async def test_polling_needs_the_ip_hash_line(
    nginx: str, cluster: Cluster, tmp_path: Path
) -> None:
    """Round robin spreads one polling session over both nodes: the node that did not
    open the session answers 400, and the client never gets connected."""
    text = SHIPPED.read_text(encoding="utf-8")
    assert text.count("    ip_hash;\n") == 1
    round_robin = text.replace("    ip_hash;\n", "")
    with running_nginx(nginx, tmp_path, cluster.nodes, round_robin) as proxy:
        with pytest.raises(socketio.exceptions.ConnectionError):
            async with client_through(proxy, ["polling"], wait_timeout=1):
                pass
        session_requests = [line for line in proxy.access_log().splitlines() if "sid=" in line]
    assert any('" 400 ' in line for line in session_requests), session_requests
