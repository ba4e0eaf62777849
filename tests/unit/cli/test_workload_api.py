"""`ztgate workload-api serve`: the real executable serves py-spiffe's client until SIGTERM."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from spiffe import WorkloadApiClient

from ztgate.errors import ConfigError
from ztgate.identity.workload_api import NO_MATCH

from .conftest import ZTGATE

Cli = Callable[..., Result]
AGENT = "spiffe://ztgate.local/agent/cli-test"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="zt", dir="/tmp") as name:
        yield Path(name)


def test_serve_issues_svids_and_stops_on_sigterm(
    ztgate: Cli, config: Path, short_dir: Path
) -> None:
    exe = os.readlink("/proc/self/exe")
    digest = hashlib.sha256(Path(exe).read_bytes()).hexdigest()
    registered = ztgate(
        "agents", "register", AGENT, "-s", f"unix:uid:{os.getuid()}", "-s", f"unix:sha256:{digest}"
    )
    assert registered.exit_code == 0, registered.output
    sock = short_dir / "agent.sock"
    server = subprocess.Popen(
        [str(ZTGATE), "--config", str(config), "workload-api", "serve", "--socket", str(sock)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not sock.exists():
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        with WorkloadApiClient(socket_path=f"unix://{sock}") as client:
            assert str(client.fetch_x509_svid(timeout=5).spiffe_id) == AGENT
            assert str(client.fetch_jwt_svid(audience={"a"}, timeout=5).spiffe_id) == AGENT
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=15)
    assert server.returncode == 0, err
    assert "SPIFFE Workload API" in out
    assert not sock.exists()
    assert NO_MATCH not in err


def test_a_missing_socket_directory_is_a_config_error(ztgate: Cli, short_dir: Path) -> None:
    result = ztgate("workload-api", "serve", "--socket", str(short_dir / "no" / "agent.sock"))
    assert isinstance(result.exception, ConfigError), repr(result.exception)
    assert "directory" in result.exception.diagnostics()
