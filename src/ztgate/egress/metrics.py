"""Prometheus metrics of the egress proxy: connections by decision, bytes, open tunnels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ProxyMetrics:
    """The egress proxy's counters, in the given registry (the gateway's, or one of their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.connections = Counter(
            "ztgate_egress_connections",
            "Egress proxy connections by decision (allow, deny) and listener (tcp, unix).",
            ("decision", "listener"),
            registry=self.registry,
        )
        self.bytes = Counter(
            "ztgate_egress_bytes",
            "Bytes relayed by the egress proxy, by direction (up: to the destination).",
            ("direction",),
            registry=self.registry,
        )
        self.unrecorded_refusals = Counter(
            "ztgate_egress_unrecorded_refusals",
            "Refusals answered but not recorded one by one (past an enclave's record rate).",
            registry=self.registry,
        )
        self.open_tunnels = Gauge(
            "ztgate_egress_open_connections",
            "Egress proxy connections relaying bytes now.",
            registry=self.registry,
        )

    def connection(self, decision: str, listener: str) -> None:
        """Count one connection's decision."""
        self.connections.labels(decision, listener).inc()

    def relayed(self, up: int, down: int) -> None:
        """Count the bytes of one finished connection."""
        self.bytes.labels("up").inc(up)
        self.bytes.labels("down").inc(down)
