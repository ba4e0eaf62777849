"""The relay inside an enclave: options, limits, the server's environment, relaying to a socket."""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from ztgate.enclave import relay
from ztgate.enclave.sandbox import RELAY_SCRIPT


def test_options() -> None:
    options = relay.parse_arguments(
        ["--listen", "3128", "--socket", "/s", "--rlimit", "fsize=10", "--", "srv", "-x"]
    )
    assert options.listen == 3128 and options.socket == "/s"
    assert options.rlimit == ["fsize=10"] and options.command == ["srv", "-x"]
    with pytest.raises(SystemExit):
        relay.parse_arguments(["--listen", "1", "--socket", "/s"])


def test_the_server_environment_points_at_the_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "*")
    env = relay.server_environment(4000)
    for name in relay.PROXY_VARIABLES:
        assert env[name] == "http://127.0.0.1:4000"
    assert env["NO_PROXY"] == env["no_proxy"] == ""


def test_limits_in_a_child() -> None:
    code = (
        "import resource, sys; sys.path.insert(0, sys.argv[1]); import relay;"
        "relay.set_limits(['fsize=4096', 'nofile=64']);"
        "print(resource.getrlimit(resource.RLIMIT_FSIZE),"
        " resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(RELAY_SCRIPT.parent)],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    assert out.strip() == "(4096, 4096) (64, 64)"
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] != 4096  # this process untouched


async def test_it_runs_the_server_and_relays_to_the_socket(tmp_path: Path) -> None:
    got: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(await reader.readline())
        writer.write(b"pong\n")
        await writer.drain()
        writer.close()

    socket_path = tmp_path / "p.sock"
    server = await asyncio.start_unix_server(proxy, str(socket_path))
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    client = (
        "import os, socket, time\n"
        "for _ in range(100):\n"
        "    try:\n"
        f"        s = socket.create_connection(('127.0.0.1', {port})); break\n"
        "    except OSError: time.sleep(0.05)\n"
        "s.sendall(b'ping\\n'); print(s.makefile().readline().strip(), os.environ['HTTP_PROXY'])\n"
        "raise SystemExit(3)\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-S",
        str(RELAY_SCRIPT),
        "--listen",
        str(port),
        "--socket",
        str(socket_path),
        "--",
        sys.executable,
        "-c",
        client,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 20)
    server.close()
    assert process.returncode == 3  # the server's own exit status
    assert out.decode().strip() == f"pong http://127.0.0.1:{port}"
    assert got == [b"ping\n"]
