"""The throwaway redis-server of the tests and benchmarks."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ztgate.store.redis_server import INSTALL_HINT, RedisServer


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_a_server_of_its_own_that_stops_and_starts_again_on_its_port() -> None:
    with RedisServer() as server:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert _answers(server.port)
        server.stop()
        assert not _answers(server.port)
        server.start()
        assert _answers(server.port)
        directory = server.directory
    assert not _answers(server.port)
    assert not directory.exists()


def test_a_missing_executable_names_the_make_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(RuntimeError, match="make redis"):
        RedisServer()
    assert "redis-server" in INSTALL_HINT


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'bad config' >&2\nexit 1\n")
    fake.chmod(0o755)
    server = RedisServer(str(fake))
    try:
        with pytest.raises(RuntimeError, match="exited at start"):
            server.start()
    finally:
        server.close()
