"""The egress proxy: the only way out of an enclave (docs/egress-proxy.md)."""

from ztgate.egress.decision import Attribution, EgressDecision, EgressRules, decide
from ztgate.egress.grants import Grant, ProxyCredentials
from ztgate.egress.metrics import ProxyMetrics
from ztgate.egress.proxy import EgressProxy, ProxyLimits

__all__ = [
    "Attribution",
    "EgressDecision",
    "EgressProxy",
    "EgressRules",
    "Grant",
    "ProxyCredentials",
    "ProxyLimits",
    "ProxyMetrics",
    "decide",
]
