"""Several real `ecigdis-ws serve` processes sharing one SQLite file and one Redis.

The shared Redis is TEST_REDIS_URL (default redis://127.0.0.1:6379/0). Every
cluster gets its own REDIS_KEY_PREFIX, so clusters never hear each other, and the
keys under that prefix are deleted when it stops. Tests that stop Redis, or need
a password or a sentinel, start a private `redis-server` on a free port.

Without a reachable Redis (or a `redis-server` binary) these tests skip with a
message, except under CI (CI=true), where that is a failure.

The `cluster`, `pair` and `trio` fixtures run each test twice: on the shared Redis
("standalone") and on a Redis Cluster of three masters and three replicas
("redis-cluster") started once for the session on free loopback ports. The tests
with a private redis-server stay standalone: the outage (its cluster counterpart,
a master killed, is test_redis_cluster_failover.py), REDIS_HOST with a password
and database number (a cluster has neither form), and the sentinel. A cluster
with a password or in TLS (RedisSecurity) is test_redis_cluster_secured.py's own.

Timers are short, because these are real processes on real clocks: see TIMERS.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

import jwt
import pytest
import pytest_asyncio
import redis

from ecigdis_ws.cluster.redis_connection import key_base
from ecigdis_ws.fanout.channels import ChannelNames
from ecigdis_ws.settings import is_cluster_url, load_settings, parse_cluster_url
from ecigdis_ws.storage.factory import open_storage
from tests import needs
from tests.support import ChatClient, free_port, get_json

SCRIPT = Path(sys.executable).parent / "ecigdis-ws"
REDIS_SERVER = "redis-server"
REDIS_CLI = "redis-cli"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SECRET = "cluster-test-secret-that-is-long-enough-for-production"

GRACE_MS = 300
TTL_MS = 3000
TYPING_MS = 1500
TIMERS = {
    "PRESENCE_GRACE_MS": str(GRACE_MS),
    "PRESENCE_TTL_MS": str(TTL_MS),
    "TYPING_TIMEOUT_MS": str(TYPING_MS),
}
# A heartbeat renews a node's lease this often (PresenceService.HEARTBEATS_PER_TTL).
HEARTBEAT_S = TTL_MS / 1000 / 3
# What each node says in /metrics of its presence timers.
HEARTBEATS = "ecigdis_ws_presence_heartbeats_total"
GRACES_ENDED = "ecigdis_ws_presence_graces_ended_total"
GRACES_PENDING = "ecigdis_ws_presence_graces_pending"
METRIC_WAIT_S = 10.0  # bounds a wait for something that normally takes a fraction of it

NODE_UP_TIMEOUT_S = 15.0
NODE_KILL_TIMEOUT_S = 5.0
REDIS_UP_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
CLIENT_CLOSE_TIMEOUT_S = 2.0
POLL_S = 0.05
# A master unreachable this long is failed over to its replica (Redis's default is
# 15 s; short so that the failover test is quick).
CLUSTER_NODE_TIMEOUT_MS = 2000
CLUSTER_MASTERS = 3  # each with one replica
# From the last redis-server started, or a master killed, to every node saying
# cluster_state:ok: a failover takes the node timeout and an election.
CLUSTER_OK_TIMEOUT_S = 30.0
ENGINES = ("standalone", "redis-cluster")

def unavailable(reason: str) -> NoReturn:
    needs.unavailable(f"{reason}; the cluster tests need Redis and redis-server")


def wait_until(condition: Callable[[], bool], within: float) -> None:
    """Poll state that has no event to wait on (a log file, /health), blocking."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {within} s: {condition}")
        time.sleep(POLL_S)


def sync_redis(url: str) -> redis.Redis | redis.RedisCluster:
    """A blocking client for a test's own look at Redis (not a sentinel URL)."""
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, socket_timeout=2)
    address = parse_cluster_url(url)
    nodes = [redis.cluster.ClusterNode(host, port) for host, port in address.nodes]
    return redis.RedisCluster(startup_nodes=nodes, socket_timeout=2, username=address.username,
                              password=address.password, ssl=address.tls, **address.tls_files)


def delete_prefix(url: str, prefix: str) -> None:
    client = sync_redis(url)
    try:
        # On a cluster every key of the prefix has one hash tag: one slot, one DEL.
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# -- Redis -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisSecurity:
    """What a private Redis asks of its clients: nothing, a password, TLS or both.
    With TLS the certificate is self-signed (tests/certificates.py): it is also the
    CA the clients verify it with, and the client certificate they show, which
    redis-server asks for by default (tls-auth-clients yes)."""

    password: str | None = None
    cert: Path | None = None
    key: Path | None = None

    def server_args(self, port: int) -> list[str]:
        args = ["--requirepass", self.password, "--masterauth", self.password] if (
            self.password) else []
        if self.cert is None or self.key is None:
            return ["--port", str(port), *args]
        return ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(self.cert),
                "--tls-key-file", str(self.key), "--tls-ca-cert-file", str(self.cert),
                "--tls-cluster", "yes", "--tls-replication", "yes", *args]

    def tls_files(self) -> dict[str, str]:
        """redis-py's options for the certificates (also a cluster URL's query)."""
        if self.cert is None or self.key is None:
            return {}
        return {"ssl_ca_certs": str(self.cert), "ssl_certfile": str(self.cert),
                "ssl_keyfile": str(self.key)}

    def client_kwargs(self) -> dict[str, Any]:
        files = self.tls_files()
        return {"password": self.password, "ssl": bool(files), **files}

    def cli_args(self) -> list[str]:
        args = ["-a", self.password, "--no-auth-warning"] if self.password else []
        if self.cert is not None and self.key is not None:
            args += ["--tls", "--cacert", str(self.cert), "--cert", str(self.cert),
                     "--key", str(self.key)]
        return args

    def wrap(self, sock: socket.socket) -> socket.socket:
        """The probe's raw socket, in TLS when the server speaks it."""
        if self.cert is None or self.key is None:
            return sock
        context = ssl.create_default_context(cafile=str(self.cert))
        context.load_cert_chain(str(self.cert), str(self.key))
        return context.wrap_socket(sock, server_hostname="127.0.0.1")

    def cluster_url(self, addresses: list[str], password: str | None = None,
                    trust: bool = True) -> str:
        """REDIS_URL of a cluster of these members (`password`: another one;
        not `trust`: without the CA, so the system's CAs are what verify)."""
        password = self.password if password is None else password
        scheme = "rediss+cluster" if self.cert is not None else "redis+cluster"
        login = f":{quote(password, safe='')}@" if password else ""
        files = self.tls_files()
        if not trust:
            del files["ssl_ca_certs"]
        return f"{scheme}://{login}{','.join(addresses)}" + (
            f"?{urlencode(files)}" if files else "")


class RedisServer:
    """A private `redis-server` without persistence, which a test may stop and restart
    on the same port."""

    def __init__(self, workdir: Path, *args: str, config: Path | None = None,
                 security: RedisSecurity | None = None) -> None:
        if shutil.which(REDIS_SERVER) is None:
            unavailable(f"{REDIS_SERVER} is not on PATH")
        self.port = free_port()
        self.workdir = workdir
        self.args = args
        self.config = config
        self.security = security or RedisSecurity()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        config = [str(self.config)] if self.config is not None else []
        command = [REDIS_SERVER, *config, *self.security.server_args(self.port),
                   "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--daemonize", "no",
                   "--dir", str(self.workdir), *self.args]
        with self.log_path.open("a", encoding="utf-8") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + REDIS_UP_TIMEOUT_S
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not start: {self.log_path.read_text()}")
            time.sleep(POLL_S)

    def answers(self) -> bool:
        """True once the port accepts connections (a password may still be required)."""
        try:
            with (socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw,
                  self.security.wrap(raw) as sock):
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def stop(self) -> None:
        """Stop at once, as a crash would (no persistence to lose)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=NODE_KILL_TIMEOUT_S)
        self.process = None


class ClusterMember(RedisServer):
    """One redis-server of a Redis Cluster. Its bus port is chosen too: the default
    (port + 10000) may be taken or past 65535."""

    def __init__(self, workdir: Path, security: RedisSecurity | None = None) -> None:
        super().__init__(workdir, security=security)
        self.bus_port = free_port()
        self.args = ("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf",
                     "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
                     "--cluster-port", str(self.bus_port),
                     # A replica syncs at once (Redis 7 waits 5 s for more replicas):
                     # one that never synced is not promoted when its master dies.
                     "--repl-diskless-sync-delay", "0")

    def ready(self) -> bool:
        """cluster_state:ok here and, on a replica, its link to its master up."""
        try:
            client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1,
                                 decode_responses=True, **self.security.client_kwargs())
            try:
                state = client.execute_command("CLUSTER INFO")  # parsed into a dict
                replication = client.info("replication")
            finally:
                client.close()
        except redis.RedisError:
            return False
        return state.get("cluster_state") == "ok" and (
            replication.get("role") == "master" or replication.get("master_link_status") == "up")


class RedisClusterServers:
    """A real Redis Cluster on loopback: CLUSTER_MASTERS masters with `replicas`
    replicas each, asking for what `security` says."""

    def __init__(self, workdir: Path, security: RedisSecurity | None = None,
                 replicas: int = 1) -> None:
        if shutil.which(REDIS_CLI) is None:
            unavailable(f"{REDIS_CLI} is not on PATH")
        self.security = security or RedisSecurity()
        self.replicas = replicas
        self.members = [ClusterMember(workdir, self.security)
                        for _ in range((1 + replicas) * CLUSTER_MASTERS)]

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{member.port}" for member in self.members]

    @property
    def url(self) -> str:
        """REDIS_URL for the nodes: every member, so any one of them finds the cluster."""
        return self.security.cluster_url(self.addresses)

    def start(self) -> None:
        for member in self.members:
            member.start()
        result = subprocess.run(
            [REDIS_CLI, *self.security.cli_args(), "--cluster", "create", *self.addresses,
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        self.wait_ok()

    def wait_ok(self) -> None:
        """Wait until every running member is ready (after a kill: its replica was
        promoted; after a restart: the restarted one synced as a replica)."""
        running = [member for member in self.members if member.process is not None]
        wait_until(lambda: all(member.ready() for member in running), CLUSTER_OK_TIMEOUT_S)

    def master_of(self, key: str) -> ClusterMember:
        """The member now serving `key`'s slot, as the cluster says."""
        client = sync_redis(self.url)
        try:
            assert isinstance(client, redis.RedisCluster)
            node = client.get_node_from_key(key)
        finally:
            client.close()
        return next(member for member in self.members if member.port == node.port)

    def stop(self) -> None:
        for member in self.members:
            member.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """Started once for the session: the cluster variant's cost is paid once."""
    servers = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="session", params=ENGINES)
def redis_engine_url(request: pytest.FixtureRequest) -> str:
    """REDIS_URL of the nodes: the shared Redis, or the session's Redis Cluster."""
    if request.param == "standalone":
        url: str = request.getfixturevalue("shared_redis_url")
        return url
    servers: RedisClusterServers = request.getfixturevalue("redis_cluster")
    return servers.url


@pytest.fixture(scope="session")
def shared_redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {url} is not reachable ({exc}); set TEST_REDIS_URL")
    finally:
        client.close()
    return url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- server nodes ----------------------------------------------------------------------


class Node:
    """One `ecigdis-ws serve` process; its stderr goes to a log file."""

    def __init__(self, server_id: str, port: int, process: subprocess.Popen[bytes],
                 log_path: Path) -> None:
        self.server_id = server_id
        self.port = port
        self.process = process
        self.log_path = log_path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def health(self) -> tuple[int, dict[str, Any]]:
        return get_json(f"{self.url}/health")

    async def health_async(self) -> tuple[int, dict[str, Any]]:
        return await asyncio.to_thread(self.health)

    def metrics_json(self) -> dict[str, Any]:
        """/metrics as {metric: value or {"label=value,...": value}}."""
        return get_json(f"{self.url}/metrics?format=json")[1]

    def metric(self, name: str) -> float:
        """One unlabelled figure of /metrics (0 while it has not been counted)."""
        return float(self.metrics_json().get(name, 0.0))

    async def metric_reaches(self, name: str, value: float, within: float = METRIC_WAIT_S) -> None:
        """Wait until the node's figure (a counter) is at least `value`."""
        await asyncio.to_thread(wait_until, lambda: self.metric(name) >= value, within)

    async def graces_ended(self, count: int, since: float) -> None:
        """Wait until `count` more grace periods ran out here, and were announced."""
        await self.metric_reaches(GRACES_ENDED, since + count)

    async def figure(self, name: str) -> float:
        return await asyncio.to_thread(self.metric, name)

    async def graces_settled(self) -> None:
        """Wait until no grace period is running here (each ended or was cut short)."""
        await asyncio.to_thread(wait_until, lambda: self.metric(GRACES_PENDING) == 0, METRIC_WAIT_S)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine dies."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=NODE_KILL_TIMEOUT_S)

    def wait_healthy(self, within: float = NODE_UP_TIMEOUT_S) -> float:
        """Wait until /health is 200 with Redis connected; return the seconds it took."""
        started = time.monotonic()
        last: object = "no answer"
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"{self.server_id} exited {self.process.returncode}:\n{self.log()}")
            try:
                status, body = self.health()
                if status == 200 and body.get("redis") == "connected":
                    return time.monotonic() - started
                last = (status, body)
            except OSError as exc:
                last = exc
            if time.monotonic() - started > within:
                pytest.fail(f"{self.server_id} not healthy within {within} s ({last}):\n"
                            f"{self.log()}")
            time.sleep(POLL_S)

    async def wait_healthy_async(self, within: float = NODE_UP_TIMEOUT_S) -> float:
        return await asyncio.to_thread(self.wait_healthy, within)


async def heartbeats(*nodes: Node, count: int = 1) -> None:
    """Wait until each node has run `count` more presence heartbeats from now (each
    announces the users of nodes found dead)."""
    before = [await node.figure(HEARTBEATS) for node in nodes]
    within = METRIC_WAIT_S + count * HEARTBEAT_S
    for node, seen in zip(nodes, before, strict=True):
        await node.metric_reaches(HEARTBEATS, seen + count, within)


# Databases `ecigdis-ws migrate` wrote in this process, by the DB_ settings they were
# written with (Cluster.migrate copies them).
_MIGRATED: dict[tuple[tuple[str, str], ...], Path] = {}


class Cluster:
    """Nodes sharing one SQLite database (WAL) and one Redis key prefix."""

    def __init__(
        self, workdir: Path, redis_url: str, keys_url: str | None = None, **env: str
    ) -> None:
        self.workdir = workdir
        self.redis_url = redis_url
        self.keys_url = keys_url or redis_url  # where the keys are (not a sentinel URL)
        self.prefix = f"cluster-test-{secrets.token_hex(4)}"
        self.database_url = f"sqlite:///{workdir / 'chat.db'}"
        self.extra_env = env
        self.nodes: list[Node] = []
        self.clients: list[ChatClient] = []
        self.migrate()

    @property
    def key_base(self) -> str:
        """What the nodes' keys and channel start with ({prefix} on a Redis Cluster)."""
        return key_base(self.prefix, self.redis_url)

    @property
    def channel(self) -> str:
        """The node-wide channel every node reads."""
        return f"{self.key_base}:fanout"

    def room_channel(self, room: str) -> str:
        """The channel of one conversation's or user's room (FANOUT_CHANNELS=per-room)."""
        names = ChannelNames(self.channel, self.prefix)
        channel = names.of_room(room)
        assert channel is not None, room
        return channel

    @contextlib.contextmanager
    def subscribe(self, channel: str | None = None) -> Iterator[redis.client.PubSub]:
        """A listener on a fan-out channel (the node-wide one by default); on a
        cluster, SSUBSCRIBE on the channel's master, as the nodes do. The client
        stays referenced meanwhile: collecting it closes its connections."""
        channel = channel or self.channel
        client = sync_redis(self.keys_url)
        sharded = isinstance(client, redis.RedisCluster)
        if isinstance(client, redis.RedisCluster):
            master = client.get_node_from_key(channel)
            client.close()
            client = redis.Redis(host=master.host, port=master.port)
        listener = client.pubsub(ignore_subscribe_messages=True)
        try:
            if sharded:
                listener.ssubscribe(channel)
            else:
                listener.subscribe(channel)
            yield listener
        finally:
            listener.close()
            client.close()

    def publish(self, message: bytes, channel: str | None = None) -> int:
        """PUBLISH (SPUBLISH on a cluster) on a fan-out channel, the node-wide one
        by default, as anyone who can reach Redis could; return how many
        listeners heard it."""
        channel = channel or self.channel
        client = sync_redis(self.keys_url)
        try:
            if isinstance(client, redis.RedisCluster):
                return int(client.spublish(channel, message))
            return int(client.publish(channel, message))
        finally:
            client.close()

    def env(self, **overrides: str | None) -> dict[str, str]:
        """The environment of a node (or a CLI command); an override of None removes."""
        env: dict[str, str | None] = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8",
            "NODE_ENV": "test",
            "LOG_LEVEL": "info",
            "DATABASE_URL": self.database_url,
            "MIGRATE_ON_START": "false",
            "JWT_SECRET": SECRET,
            "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": self.prefix,
            "RATE_LIMIT_EVENTS": "0",
            "RATE_LIMIT_MESSAGES": "0",
            **TIMERS,
            **self.extra_env,
            **overrides,
        }
        if "PYTHONPATH" in os.environ:  # PYTHONPATH=src: a clone's code, not the venv's install
            paths = os.environ["PYTHONPATH"].split(os.pathsep)
            env.setdefault("PYTHONPATH", os.pathsep.join(os.path.abspath(p) for p in paths))
        return {name: value for name, value in env.items() if value is not None}

    def migrate(self) -> None:
        """The schema, as `ecigdis-ws migrate` writes it: the command runs once per
        worker process and database setting, and each cluster after that starts
        from a copy of the database it migrated. (A Python start of its own per
        cluster was 0.7 s of CPU each on a suite that is CPU-bound at four workers.)"""
        database = self.workdir / "chat.db"
        if "DATABASE_URL" in self.extra_env:  # (not this cluster's SQLite file)
            self._run_migrate()
            return
        key = tuple(sorted((k, v) for k, v in self.extra_env.items() if k.startswith("DB_")))
        template = _MIGRATED.get(key)
        if template is None:
            self._run_migrate()
            template = Path(tempfile.mkdtemp(prefix="migrated-")) / "chat.db"
            shutil.copyfile(database, template)
            atexit.register(shutil.rmtree, template.parent, True)
            _MIGRATED[key] = template
        else:
            shutil.copyfile(template, database)

    def _run_migrate(self) -> None:
        result = subprocess.run([str(SCRIPT), "migrate"], cwd=self.workdir, env=self.env(),
                                capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                                check=False)
        assert result.returncode == 0, result.stderr

    def launch(self, server_id: str, **env: str | None) -> Node:
        """Start a node without waiting for it."""
        port = free_port()
        log_path = self.workdir / f"{server_id}.stderr"
        with log_path.open("w", encoding="utf-8") as log:
            process = subprocess.Popen(
                [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=self.workdir, env=self.env(SERVER_ID=server_id, **env),
                stdout=subprocess.DEVNULL, stderr=log,
            )
        node = Node(server_id, port, process, log_path)
        self.nodes.append(node)
        return node

    def start(self, *server_ids: str, **env: str | None) -> list[Node]:
        """Start nodes side by side; return them once every one is healthy."""
        nodes = [self.launch(server_id, **env) for server_id in server_ids]
        for node in nodes:
            node.wait_healthy()
        return nodes

    def token(self, user_id: int, name: str | None = None, ttl_s: int = 600) -> str:
        claims = {"userId": user_id, "name": name or f"user{user_id}",
                  "exp": int(time.time()) + ttl_s}
        return jwt.encode(claims, SECRET, algorithm="HS256")

    async def client(self, node: Node, user_id: int, name: str | None = None) -> ChatClient:
        """A socket on `node`, authenticated in the handshake as `user_id`."""
        client = ChatClient(node.url)
        self.clients.append(client)
        await client.connect(token=self.token(user_id, name))
        await client.wait_for("authenticated")
        return client

    async def conversation(self, *members: int, title: str = "cluster") -> int:
        settings = load_settings(self.env(), dotenv_path=None)
        storage = await open_storage(settings)
        try:
            return await storage.conversations.create_conversation(title, list(members),
                                                     int(time.time() * 1000))
        finally:
            await storage.close()

    async def close_clients(self) -> None:
        clients, self.clients = self.clients, []
        for client in clients:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLIENT_CLOSE_TIMEOUT_S):
                    await client.close()

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.kill()

    def clean_redis(self) -> None:
        with contextlib.suppress(redis.RedisError):
            delete_prefix(self.keys_url, self.key_base)


@contextlib.asynccontextmanager
async def cluster_on(
    workdir: Path, redis_url: str, keys_url: str | None = None, **env: str
) -> AsyncIterator[Cluster]:
    """A cluster whose nodes, clients and Redis keys are gone afterwards."""
    cluster = Cluster(workdir, redis_url, keys_url, **env)
    try:
        yield cluster
    finally:
        await cluster.close_clients()
        cluster.stop()
        cluster.clean_redis()


@pytest_asyncio.fixture
async def cluster(tmp_path: Path, redis_engine_url: str) -> AsyncIterator[Cluster]:
    """A cluster of this test's own on the shared Redis or the session's Redis
    Cluster, with no node started yet."""
    async with cluster_on(tmp_path, redis_engine_url) as running:
        yield running


@pytest.fixture
def pair(cluster: Cluster) -> Cluster:
    """Nodes "A" and "B" sharing Redis."""
    cluster.start("A", "B")
    return cluster


@pytest.fixture
def trio(cluster: Cluster) -> Cluster:
    """Nodes "A", "B" and "C" sharing Redis."""
    cluster.start("A", "B", "C")
    return cluster
