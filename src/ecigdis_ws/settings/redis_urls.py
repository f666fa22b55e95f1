"""The Redis URLs REDIS_URL takes, and what a Redis Cluster URL says."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlparse

# The forms of REDIS_URL, as the setting's help and its error message list them.
REDIS_URL_FORMS = ("redis://, rediss:// (TLS), redis+sentinel:// or "
                   "redis+cluster://host:port[,host:port...] (rediss+cluster:// with TLS)")
DEFAULT_CLUSTER_PORT = 6379  # a cluster node given without a port (Redis's own default)
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS
CLUSTER_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


@dataclass(frozen=True)
class ClusterAddress:
    """What a redis+cluster:// URL says: where to discover the cluster, and how to log in."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool
    # redis-py's ssl_* options from the URL's query (see CLUSTER_TLS_OPTIONS).
    tls_files: dict[str, str] = field(default_factory=dict)


def is_cluster_url(url: str) -> bool:
    return urlparse(url).scheme in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterAddress:
    """redis+cluster://[user:password@]host[:port][,host[:port]...][/0], or
    rediss+cluster://…[?ssl_ca_certs=…]; ValueError saying what is wrong otherwise
    (a cluster has only database 0)."""
    parts = urlparse(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        raise ValueError("expected redis+cluster:// or rediss+cluster://")
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    if parts.path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has only database 0")
    tls = CLUSTER_SCHEMES[parts.scheme]
    nodes = tuple(_host_port(item) for item in hosts.split(","))
    return ClusterAddress(nodes, unquote(username) or None, unquote(password) or None,
                          tls, _tls_files(parts.query, tls))


def _tls_files(query: str, tls: bool) -> dict[str, str]:
    """?ssl_ca_certs=/path&ssl_certfile=...&ssl_keyfile=... (rediss:// passes the same
    names to redis-py): the CA that signed the cluster's certificates, when the
    system's CAs did not, and this server's client certificate, when the cluster
    asks for one (redis-server's tls-auth-clients, yes by default)."""
    options = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    unknown = sorted(set(options) - set(CLUSTER_TLS_OPTIONS))
    if unknown:
        raise ValueError(f"a Redis Cluster URL takes only {', '.join(CLUSTER_TLS_OPTIONS)} "
                         f"(not {', '.join(unknown)})")
    if options and not tls:
        raise ValueError("ssl_* options need rediss+cluster://")
    if any(len(values) != 1 or not values[0] for values in options.values()):
        raise ValueError("each ssl_* option once, with a file's path")
    return {name: values[0] for name, values in options.items()}


def _host_port(item: str) -> tuple[str, int]:
    host, colon, port = item.strip().rpartition(":")
    if not colon or not host:  # "host" alone: the default port
        host, port = item.strip(), str(DEFAULT_CLUSTER_PORT)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a host:port: {item!r}")
    return host, int(port)
