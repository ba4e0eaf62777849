"""Free loopback ports."""

from __future__ import annotations

import socket

from ztgate.ports import free_port


def test_a_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
