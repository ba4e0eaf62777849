"""The egress proxy as the settings describe it.

`ztgate serve` (or anything else that starts enclaves) builds one proxy
with `start_egress_proxy` and hands it, with
`SandboxOptions.from_settings(settings.enclaves)`, to each `Enclave`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry

from ztgate.audit.log import AuditLog
from ztgate.config import Settings
from ztgate.egress.grants import Grant
from ztgate.egress.metrics import ProxyMetrics
from ztgate.egress.proxy import EgressProxy, ProxyLimits
from ztgate.egress.request import ProxyRequest
from ztgate.guards.resolver import SystemResolver


def proxy_limits(settings: Settings) -> ProxyLimits:
    """The proxy's bounds from `[egress_proxy]`."""
    section = settings.egress_proxy
    return ProxyLimits(
        max_header_bytes=section.max_header_bytes,
        connect_timeout=section.connect_timeout_seconds,
        idle_timeout=section.idle_timeout_seconds,
        max_connections=section.max_connections,
        max_connections_per_enclave=section.max_connections_per_enclave,
        refusal_records_per_second=section.refusal_records_per_second,
    )


async def start_egress_proxy(
    settings: Settings,
    audit: AuditLog,
    registry: CollectorRegistry | None = None,
    *,
    agents: Callable[[ProxyRequest, str], Awaitable[Grant]] | None = None,
) -> EgressProxy:
    """A proxy recording in `audit` (started), counting in `registry`; on TCP if enabled;
    deciding agents' connections with `agents` (egress/agents.py; None: refused).

    Raises:
        OSError: the TCP address cannot be bound.
    """
    section = settings.egress_proxy
    resolver = SystemResolver(
        timeout=section.resolve_timeout_seconds,
        cache_seconds=settings.guards.egress.resolve_cache_seconds,
    )
    proxy = EgressProxy(
        audit,
        resolver,
        limits=proxy_limits(settings),
        metrics=ProxyMetrics(registry),
        agents=agents,
    )
    if section.enabled:
        await proxy.listen_tcp(section.host, section.port)
    return proxy
