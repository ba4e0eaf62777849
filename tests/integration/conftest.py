"""Fixtures for the integration tests: real processes, real sockets, real HTTP.

- `upstream`: the tool server process (`upstream_server.py`) for the session.
- `dead_port`: a loopback port where nothing listens.
- `gateway`: `python -m ztgate --config <tmp>/ztgate.toml serve` with the tools
  of `harness.main_tools()`, for the session. Tests that share it compare
  before/after snapshots, never absolute counts, so their order does not matter.
- `client`: an httpx client of that gateway that fails on any traceback.

Tests that need a gateway of their own use `harness.start_gateway`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from .harness import (
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    MAX_RESULT_BYTES,
    GatewayProcess,
    Upstream,
    gateway_toml,
    main_tools,
    make_client,
    start_gateway,
    start_upstream,
)


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    """The tool server process, for the whole session."""
    with start_upstream() as server:
        yield server


@pytest.fixture(scope="session")
def dead_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody takes it), never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="session")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, dead_port: int
) -> Iterator[GatewayProcess]:
    """The shared gateway, declaring `main_tools()`."""
    toml = gateway_toml(
        main_tools(upstream, dead_port),
        gateway={
            "max_body_bytes": MAX_BODY_BYTES,
            "max_json_depth": MAX_JSON_DEPTH,
            "max_result_bytes": MAX_RESULT_BYTES,
            "upstream_timeout_seconds": 5.0,
        },
    )
    with start_gateway(tmp_path_factory.mktemp("gateway"), toml) as process:
        yield process


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    """A client of the shared gateway."""
    with make_client(gateway.url) as http:
        yield http
