"""An enclave's life: its socket on the proxy, its command, its end."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from ztgate.audit.log import AuditLog
from ztgate.clock import SystemClock
from ztgate.egress.proxy import EgressProxy
from ztgate.enclave.runtime import Enclave
from ztgate.enclave.sandbox import LAUNCH_SCRIPT, SandboxOptions
from ztgate.enclave.spec import EnclaveSpec, SandboxUnavailableError
from ztgate.guards.resolver import Address, ResolutionError
from ztgate.store.database import Database


class NoNames:
    async def resolve(self, host: str) -> Sequence[Address]:
        raise ResolutionError("none")


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[EgressProxy]:
    database = Database(f"sqlite:///{tmp_path / 'ztgate.db'}")
    database.migrate()
    log = AuditLog(database, SystemClock())
    await log.start()
    found = EgressProxy(log, NoNames())
    yield found
    await found.stop()
    await log.stop()
    database.dispose()


SPEC = EnclaveSpec(name="files", command=sys.executable, args=("-V",), secrets={"T": "v"})


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_start_serves_a_socket_and_stop_removes_it(proxy: EgressProxy) -> None:
    enclave = Enclave(SPEC, proxy)
    with pytest.raises(SandboxUnavailableError, match="not started"):
        enclave.command()
    await enclave.start()
    socket = enclave.socket_path
    assert socket is not None and socket.exists()
    assert socket.stat().st_mode & 0o777 == 0o600
    assert socket.parent.stat().st_mode & 0o777 == 0o700
    if os.geteuid() == 0:
        assert socket.stat().st_uid == enclave.options.uid
    assert proxy.grants.get(enclave.grant_id) is not None
    wrapped = enclave.command()
    assert wrapped.command == sys.executable
    assert wrapped.args[:3] == ("-I", "-S", str(LAUNCH_SCRIPT))
    await enclave.stop()
    await enclave.stop()
    assert not socket.parent.exists()
    assert proxy.grants.get(enclave.grant_id) is None


async def test_two_enclaves_of_one_server_have_their_own_grants(proxy: EgressProxy) -> None:
    assert Enclave(SPEC, proxy).grant_id != Enclave(SPEC, proxy).grant_id


async def test_no_sandbox_no_grant(proxy: EgressProxy) -> None:
    enclave = Enclave(SPEC, proxy, SandboxOptions(bwrap="ztgate-no-such-bwrap"))
    with pytest.raises(SandboxUnavailableError):
        await enclave.start()
    assert enclave.socket_path is None and proxy.grants.get(enclave.grant_id) is None


async def test_a_working_directory_outside_the_paths_is_refused(
    proxy: EgressProxy, tmp_path: Path
) -> None:
    spec = EnclaveSpec(name="files", command="python3", cwd=tmp_path, read_only_paths=())
    with pytest.raises(SandboxUnavailableError, match="working directory"):
        await Enclave(spec, proxy).start()
