"""The proxy and the sandbox options from the settings."""

from __future__ import annotations

import socket
from pathlib import Path

from prometheus_client import CollectorRegistry

from ztgate.audit.log import AuditLog
from ztgate.clock import SystemClock
from ztgate.egress.service import proxy_limits, start_egress_proxy
from ztgate.enclave.sandbox import SandboxOptions
from ztgate.store.database import Database
from ztgate.testing import make_settings


def test_limits_and_options_follow_the_settings(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        "[egress_proxy]\nidle_timeout_seconds = 5\nmax_connections = 3\n"
        "[enclaves]\nbwrap = '/opt/bwrap'\nuid = 1000\nrelay_port = 4000\n",
        init=False,
    )
    limits = proxy_limits(settings)
    assert limits.idle_timeout == 5 and limits.max_connections == 3
    options = SandboxOptions.from_settings(settings.enclaves)
    assert (options.bwrap, options.uid, options.gid, options.relay_port) == (
        "/opt/bwrap",
        1000,
        65534,
        4000,
    )


async def test_tcp_only_when_enabled(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'z.db'}")
    database.migrate()
    log = AuditLog(database, SystemClock())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(
        tmp_path, f"[egress_proxy]\nenabled = true\nport = {port}\n", init=False
    )
    registry = CollectorRegistry()
    proxy = await start_egress_proxy(settings, log, registry)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        assert proxy.metrics.registry is registry
    finally:
        await proxy.stop()
    (tmp_path / "off").mkdir()
    off = await start_egress_proxy(make_settings(tmp_path / "off", init=False), log)
    assert off._tcp is None
    await off.stop()
    database.dispose()
