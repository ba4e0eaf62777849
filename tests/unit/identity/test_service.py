"""Running the Workload API from settings (alone, or beside the gateway)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from ztgate.config import Settings
from ztgate.errors import ConfigError
from ztgate.identity.service import serve_workload_api
from ztgate.testing import make_settings


async def _wait_for(path: Path) -> None:
    for _ in range(200):
        if path.exists():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


async def test_serves_on_the_socket_until_stopped(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    stop = asyncio.Event()
    task = asyncio.create_task(serve_workload_api(settings, path, stop))
    await _wait_for(path)
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(path))  # something is listening
    stop.set()
    await asyncio.wait_for(task, 5)
    assert not path.exists(), "the socket is removed on stop"


async def test_without_a_certificate_authority_it_refuses_to_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, init=False)
    with pytest.raises(ConfigError, match="certificate authority"):
        await serve_workload_api(settings, tmp_path / "agent.sock", asyncio.Event())
