"""Prometheus metrics, one registry per server so several servers can share a process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

# Buckets around the interesting range for chat: 1 ms (in-memory) to 3 s (DB timeout).
SEND_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # process_resident_memory_bytes, CPU seconds, open fds: what operators and
        # `ecigdis-ws bench` read to see memory per connection.
        ProcessCollector(registry=self.registry)
        self.connections = Gauge(
            "ecigdis_ws_connections", "Open Socket.IO connections", registry=self.registry
        )
        self.authenticated_users = Gauge(
            "ecigdis_ws_authenticated_users",
            "Distinct users with an authenticated socket on this node",
            registry=self.registry,
        )
        self.events_received = Counter(
            "ecigdis_ws_events_received", "Client events received, by name", ["event"],
            registry=self.registry,
        )
        self.messages_stored = Counter(
            "ecigdis_ws_messages_stored", "Messages stored (duplicates not counted)",
            registry=self.registry,
        )
        self.deliveries = Counter(
            "ecigdis_ws_deliveries", "Events fanned out to sockets on this node",
            registry=self.registry,
        )
        # What this node reads from Redis (its own messages echoed back included), by
        # channel kind: with per-room channels a node reads only its rooms' traffic.
        self.fanout_received = Counter(
            "ecigdis_ws_fanout_received", "Fan-out messages read from Redis, by channel kind",
            ["channel"], registry=self.registry,
        )
        self.fanout_subscriptions = Gauge(
            "ecigdis_ws_fanout_subscriptions", "Redis channels this node is subscribed to",
            registry=self.registry,
        )
        self.errors = Counter(
            "ecigdis_ws_errors", "Error replies sent, by code", ["code"], registry=self.registry
        )
        self.stale_session_requests = Counter(
            "ecigdis_ws_stale_session_requests",
            "Engine.IO requests for a session that is closed or unknown (answered 400)",
            registry=self.registry,
        )
        self.protocol_errors = Counter(
            "ecigdis_ws_protocol_errors",
            "Connections closed for a packet that breaks the Engine.IO or Socket.IO "
            "protocol, by reason",
            ["reason"],
            registry=self.registry,
        )
        # What presence does on its own timers, so an operator (and a test of real
        # processes) can see a lease being renewed and grace periods running out.
        self.presence_heartbeats = Counter(
            "ecigdis_ws_presence_heartbeats",
            "Presence heartbeats run by this node (lease renewed, dead nodes swept)",
            registry=self.registry,
        )
        self.presence_graces_ended = Counter(
            "ecigdis_ws_presence_graces_ended",
            "Grace periods that ran out here (the user's last socket stayed closed)",
            registry=self.registry,
        )
        self.presence_graces_pending = Gauge(
            "ecigdis_ws_presence_graces_pending",
            "Users whose last socket here closed and whose grace period has not ended",
            registry=self.registry,
        )
        self.send_latency = Histogram(
            "ecigdis_ws_message_send_latency_seconds",
            "message:send from receipt to fan-out",
            buckets=SEND_LATENCY_BUCKETS,
            registry=self.registry,
        )
        # Set when /metrics is scraped, from the same round-trips as /health, so an
        # alert rule can tell "database down" from "node down" (deploy/prometheus/).
        self.dependency_up = Gauge(
            "ecigdis_ws_dependency_up",
            "1 if the dependency answered at this scrape, else 0 (redis only where configured)",
            ["dependency"],
            registry=self.registry,
        )

    def track_connections(self, count: Callable[[], int], users: Callable[[], int]) -> None:
        self.connections.set_function(lambda: float(count()))
        self.authenticated_users.set_function(lambda: float(users()))

    def track_graces(self, pending: Callable[[], int]) -> None:
        self.presence_graces_pending.set_function(lambda: float(pending()))

    def prometheus_text(self) -> bytes:
        return generate_latest(self.registry)

    def as_json(self) -> dict[str, Any]:
        """The same figures as the text exposition, as {metric: value or {labels: value}}."""
        figures: dict[str, Any] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                if sample.labels:
                    key = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                    figures.setdefault(sample.name, {})[key] = sample.value
                else:
                    figures[sample.name] = sample.value
        return figures
