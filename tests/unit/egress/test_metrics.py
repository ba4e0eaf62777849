"""The egress proxy's Prometheus counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ztgate.egress.metrics import ProxyMetrics


def test_connections_and_bytes_are_counted_in_the_given_registry() -> None:
    registry = CollectorRegistry()
    metrics = ProxyMetrics(registry)
    metrics.connection("allow", "unix")
    metrics.connection("deny", "tcp")
    metrics.connection("deny", "tcp")
    metrics.relayed(10, 200)
    sample = registry.get_sample_value
    assert sample("ztgate_egress_connections_total", {"decision": "deny", "listener": "tcp"}) == 2
    assert sample("ztgate_egress_connections_total", {"decision": "allow", "listener": "unix"}) == 1
    assert sample("ztgate_egress_bytes_total", {"direction": "up"}) == 10
    assert sample("ztgate_egress_bytes_total", {"direction": "down"}) == 200
    assert sample("ztgate_egress_open_connections") == 0


def test_a_registry_of_its_own_by_default() -> None:
    assert ProxyMetrics().registry is not ProxyMetrics().registry
