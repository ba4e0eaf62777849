"""Running the SPIFFE Workload API from settings, alone or beside the gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ztgate.clock import SystemClock
from ztgate.config import Settings
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.entries import EntryRegistry
from ztgate.identity.revocation import LiveRevocations
from ztgate.identity.workload_api import IdentitySource, WorkloadApiServer
from ztgate.store.generations import GenerationWatcher


async def serve_workload_api(current: Settings, socket_path: Path, stop: asyncio.Event) -> None:
    """Serve the Workload API on `socket_path` until `stop` is set.

    Raises:
        ConfigError: no CA, or the socket cannot be bound.
    """
    identity = current.identity
    clock = SystemClock()
    ca_dir = current.path(identity.ca_dir)

    def load() -> CertificateAuthority:
        return CertificateAuthority.load(ca_dir, clock, passphrase=identity.passphrase())

    database = current.open_database()
    database.migrate()
    watcher = GenerationWatcher(database)
    revocations = LiveRevocations(database, clock)
    try:
        source = IdentitySource(
            load(),
            EntryRegistry(database, clock, identity.trust_domain),
            watcher,
            clock,
            x509_ttl=identity.x509_svid_ttl_seconds,
            jwt_ttl=identity.jwt_svid_ttl_seconds,
            skew=identity.clock_skew_seconds,
            reload_ca=load,
            revocations=revocations,
        )
        server = WorkloadApiServer(source, socket_path)
        await server.start()
        try:
            await stop.wait()
        finally:
            await server.close()
    finally:
        revocations.close()
        watcher.close()
        database.dispose()
