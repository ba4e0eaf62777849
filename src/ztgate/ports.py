"""Free loopback ports, for the servers ztgate starts on its own machine (demo, stores, cluster)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on the loopback interface right now (another process may take it next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
