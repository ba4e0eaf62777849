"""The first process inside an enclave: the only way from its loopback to the egress proxy.

Run inside the sandbox with the host's interpreter, as a script (`python -I
-S relay.py ...`, standard library only: the ztgate package is not visible
inside). In order, it:

  (1) gives up root, when started as root (`--user UID:GID`): groups, then
      gid, then uid, so no capability survives;
  (2) sets the resource limits (`--rlimit as=...`), inherited by the server;
  (3) listens on 127.0.0.1:`--listen` in the sandbox's own network
      namespace, relaying each TCP connection to the egress proxy's Unix
      socket (`--socket`) bound into the sandbox (two threads per
      connection, blocking sockets: no asyncio, whose import alone costs
      more than the rest of the relay's start);
  (4) starts the server command (after `--`) with stdin, stdout and stderr
      as they are (the MCP stdio stream), its environment the relay's own
      (already scrubbed) plus HTTP_PROXY, HTTPS_PROXY, ALL_PROXY (and lower
      case) pointing at the listener and an empty NO_PROXY;
  (5) exits with the server's exit status when it ends, and passes
      SIGTERM and SIGINT on to it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading

RLIMITS = {
    "as": resource.RLIMIT_AS,
    "nproc": resource.RLIMIT_NPROC,
    "cpu": resource.RLIMIT_CPU,
    "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE,
}
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
CHUNK = 65536


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """The relay's options and the server command."""
    parser = argparse.ArgumentParser(prog="relay")
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--user", default=None, help="UID:GID to become, when started as root")
    parser.add_argument("--rlimit", action="append", default=[], help="name=value")
    parser.add_argument("--cwd", default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    if options.command[:1] == ["--"]:
        options.command = options.command[1:]
    if not options.command:
        parser.error("no server command after --")
    return options


def drop_privileges(user: str) -> None:
    """Become `UID:GID` with no supplementary groups (and so no capabilities)."""
    uid, gid = (int(part) for part in user.split(":", 1))
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:  # pragma: no cover - the kernel refused
        raise SystemExit("relay: could not give up root")


def set_limits(pairs: list[str]) -> None:
    """Apply `name=value` resource limits (soft and hard) to this process and its children."""
    for pair in pairs:
        name, _, value = pair.partition("=")
        limit = int(value)
        resource.setrlimit(RLIMITS[name], (limit, limit))


def server_environment(port: int) -> dict[str, str]:
    """The server's environment: the relay's own, with the proxy variables."""
    env = dict(os.environ)
    url = f"http://127.0.0.1:{port}"
    env.update(dict.fromkeys(PROXY_VARIABLES, url))
    env["NO_PROXY"] = env["no_proxy"] = ""
    return env


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)


def _relay(client: socket.socket, socket_path: str) -> None:
    """Relay one TCP connection to the proxy's socket, both ways, until both ends close."""
    with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as proxy:
        try:
            proxy.connect(socket_path)
        except OSError:
            return
        down = threading.Thread(target=_pipe, args=(proxy, client), daemon=True)
        down.start()
        _pipe(client, proxy)
        down.join()


def _accept(listener: socket.socket, socket_path: str) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_relay, args=(client, socket_path), daemon=True).start()


def run(options: argparse.Namespace) -> int:
    """Listen, start the server, relay until it exits; its exit status."""
    listener = socket.create_server(("127.0.0.1", options.listen))
    threading.Thread(target=_accept, args=(listener, options.socket), daemon=True).start()
    child = subprocess.Popen(  # noqa: S603 - the operator's server command
        options.command, env=server_environment(options.listen), cwd=options.cwd
    )

    def forward(sig: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = child.wait()
    return status if status >= 0 else 128 - status


def main(argv: list[str] | None = None) -> int:
    """Run the relay (steps in the module doc)."""
    options = parse_arguments(sys.argv[1:] if argv is None else argv)
    if options.user is not None:
        drop_privileges(options.user)  # (1)
    set_limits(options.rlimit)  # (2)
    return run(options)  # (3) (4) (5)


if __name__ == "__main__":
    sys.exit(main())
