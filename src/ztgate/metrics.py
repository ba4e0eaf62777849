"""Prometheus metrics: decisions by outcome and check, and latencies."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ztgate.models import Decision

CONTENT_TYPE = CONTENT_TYPE_LATEST
# `*_created` series double the exposition for no use here.
disable_created_metrics()  # type: ignore[no-untyped-call]
_FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
_SLOW_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class Metrics:
    """The gateway's metrics, in a registry of its own."""

    def __init__(self) -> None:
        self._decision_children: dict[tuple[str, str, str], Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "ztgate_decisions",
            "Decisions by phase, outcome and the check that decided.",
            ("phase", "outcome", "check"),
            registry=self.registry,
        )
        self.rejected = Counter(
            "ztgate_rejected_requests",
            "Requests refused before a decision (malformed, too large, ...), by reason.",
            ("reason",),
            registry=self.registry,
        )
        self.decision_seconds = Histogram(
            "ztgate_decision_seconds",
            "Time spent in the pre-call checks.",
            registry=self.registry,
            buckets=_FAST_BUCKETS,
        )
        self.call_seconds = Histogram(
            "ztgate_call_seconds",
            "Time from request to answer, by outcome.",
            ("outcome",),
            registry=self.registry,
            buckets=_SLOW_BUCKETS,
        )
        self.upstream_seconds = Histogram(
            "ztgate_upstream_seconds",
            "Time the tool's upstream took to answer.",
            registry=self.registry,
            buckets=_SLOW_BUCKETS,
        )
        self.upstream_errors = Counter(
            "ztgate_upstream_errors",
            "Upstream failures, by kind.",
            ("kind",),
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "ztgate_audit_failures",
            "Calls refused because the audit log could not be written.",
            registry=self.registry,
        )
        self.federation_refreshes = Counter(
            "ztgate_federation_refreshes",
            "Fetches of federated trust domains' bundles, by trust domain and result (ok, error).",
            ("trust_domain", "result"),
            registry=self.registry,
        )
        self.federation_last_refresh = Gauge(
            "ztgate_federation_last_refresh_timestamp_seconds",
            "When each federated trust domain's bundle was last fetched (Unix time).",
            ("trust_domain",),
            registry=self.registry,
        )
        self.mcp_task_instances = Gauge(
            "ztgate_mcp_task_instances",
            "Per-task instances of stdio MCP servers running now (each in its own enclave).",
            registry=self.registry,
        )
        self.federation_keys = Gauge(
            "ztgate_federation_bundle_keys",
            "Keys in each federated trust domain's current bundle, by use (x509-svid, jwt-svid).",
            ("trust_domain", "use"),
            registry=self.registry,
        )

        self.loops_flagged = Counter(
            "ztgate_loops_flagged",
            "Loops flagged: a task repeating the same call beyond the limit (once per episode).",
            registry=self.registry,
        )
        self.suspensions = Counter(
            "ztgate_suspensions",
            "Agents suspended by the gateway, by cause (burst).",
            ("cause",),
            registry=self.registry,
        )
        self.alerts = Counter(
            "ztgate_alerts",
            "Containment alerts posted to the webhook, by result (sent, failed, dropped).",
            ("result",),
            registry=self.registry,
        )

    def observe(self, decision: Decision) -> None:
        """Count a decision under its outcome and deciding check."""
        outcome = decision.outcome.value
        deciding = decision.deciding
        last = deciding[-1].check if deciding else "pipeline"
        check = "all" if outcome == "allow" else last
        key = (decision.phase.value, outcome, check)
        child = self._decision_children.get(key)
        if child is None:  # labels() costs a lock and a lookup; the label sets are few
            child = self._decision_children[key] = self.decisions.labels(*key)
        child.inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
