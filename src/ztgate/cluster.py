"""A local cluster on loopback: PostgreSQL, Redis, N gateway replicas and HAProxy in front.

`ztgate cluster up` (`make run-cluster`) and the cluster tests run it:

- one PostgreSQL cluster and one `redis-server` of its own, started by the
  same helpers the tests use (`store.postgres_server`, `store.redis_server`:
  scratch directories, free loopback ports; their data goes when it stops);
- one working directory initialised once (`ztgate init` style: config, keys,
  CA, policies), its `[store]` naming that PostgreSQL (`url`) and that Redis
  (`hot_state_url`): every replica serves the same config and the same keys;
- N `ztgate serve` processes on distinct loopback ports (the demo tools, when
  the config serves them, run once beside them, not in every replica);
- HAProxy on the front port (8470 by default), balancing round robin over the
  replicas that answer `GET /readyz`, sticking a handshake-era MCP session
  (`Mcp-Session-Id`) to the replica that opened it (docs/deployment.md).

`stop()` (Ctrl-C in `ztgate cluster up`) stops everything it started.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from ztgate.ports import free_port
from ztgate.processes import child_env, stop_process

if TYPE_CHECKING:
    from ztgate.store.redis_server import RedisServer

HAPROXY_HINT = "haproxy is not installed: run 'make haproxy' (Debian's haproxy package)"

# The balancer's config. Health: a replica leaves the rotation after two
# failed /readyz checks a second apart (its store not taking writes, or the
# process gone) and comes back after one good one. A request whose connection
# a dead replica refused is sent to another one (`retries`, `redispatch`);
# one already sent is never replayed (HAProxy retries connection failures
# only): a call is not run twice. MCP: a response naming an Mcp-Session-Id
# stores which replica opened the session, and requests carrying that id go
# back to it (handshake-era clients; 2026-07-28 requests carry no session and
# go anywhere).
HAPROXY_CONFIG = """\
# Written by ztgate cluster (src/ztgate/cluster.py).
global
    maxconn 4096
    stats socket {stats} mode 600 level user

defaults
    mode http
    timeout connect 2s
    timeout client 90s
    timeout server 90s
    retries 3
    option redispatch 1

frontend ztgate
    bind {host}:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 1s fall 2 rise 1
    stick-table type string len 128 size 100k expire 30m
    stick match req.hdr(mcp-session-id)
    stick store-response res.hdr(mcp-session-id)
{servers}
"""


def haproxy_config(host: str, port: int, replicas: Sequence[tuple[str, int]], stats: Path) -> str:
    """HAProxy's config: a front `host:port`, replicas `(name, port)` on loopback, its socket."""
    servers = "\n".join(
        f"    server {name} 127.0.0.1:{replica_port} check" for name, replica_port in replicas
    )
    return HAPROXY_CONFIG.format(host=host, port=port, servers=servers, stats=stats)


def with_store(text: str, url: str, hot_state_url: str) -> str:
    """`text` (a config file) with `[store] url` and `hot_state_url` set."""
    lines = f'url = "{url}"\nhot_state_url = "{hot_state_url}"\n'
    if text.startswith("[store]\n"):
        return "[store]\n" + lines + text[len("[store]\n") :]
    if "\n[store]\n" in text:
        return text.replace("\n[store]\n", "\n[store]\n" + lines, 1)
    return text + "\n[store]\n" + lines


def _wait_ready(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float,
    *,
    any_answer: bool = False,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{url}: the process exited with {process.returncode}: {tail}")
        with contextlib.suppress(httpx.HTTPError):
            status = httpx.get(url, timeout=2).status_code
            if status == 200 or (any_answer and status < 500):
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:g}s (log: {log})")


@dataclass
class Replica:
    """One `ztgate serve` process of the cluster."""

    name: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown, no draining."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class LocalCluster:
    """PostgreSQL, Redis, `replicas` gateways and HAProxy on loopback (see the module doc)."""

    workdir: Path
    replicas: int = 3
    port: int = 8470
    replica_ports: Sequence[int] = ()
    config_text: str | None = None
    host: str = "127.0.0.1"
    members: list[Replica] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self.config = self.workdir / "ztgate.toml"
        self._processes: list[subprocess.Popen[bytes]] = []
        self._redis: object | None = None
        self._postgres: object | None = None
        self._haproxy: subprocess.Popen[bytes] | None = None

    @property
    def redis(self) -> RedisServer:
        """The cluster's Redis (tests stop and start it)."""
        from ztgate.store.redis_server import RedisServer

        if not isinstance(self._redis, RedisServer):
            raise RuntimeError("the cluster is not running")
        return self._redis

    @property
    def url(self) -> str:
        """The load balancer's URL."""
        return f"http://{self.host}:{self.port}"

    @property
    def stats_socket(self) -> Path:
        """HAProxy's stats socket (`show stat`)."""
        return self.workdir / "haproxy.sock"

    def _ask_haproxy(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats_socket))
            sock.sendall(command.encode() + b"\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return data.decode()

    def balancer_pids(self) -> list[int]:
        """HAProxy's process id (none when it is not running)."""
        haproxy = self._haproxy
        return [haproxy.pid] if haproxy is not None and haproxy.poll() is None else []

    def sessions_held(self) -> int:
        """How many MCP sessions (`Mcp-Session-Id`) HAProxy's stick table holds."""
        answer = self._ask_haproxy("show table replicas")
        match = re.search(r"used:(\d+)", answer)
        return int(match.group(1)) if match else 0

    def served(self) -> dict[str, int]:
        """How many requests HAProxy sent to each replica so far (its `stot` counter)."""
        data = self._ask_haproxy("show stat")
        rows = list(csv.reader(io.StringIO(data.lstrip("# "))))
        header = rows[0]
        name, total = header.index("svname"), header.index("stot")
        names = {replica.name for replica in self.members}
        return {row[name]: int(row[total]) for row in rows[1:] if row and row[name] in names}

    def start(self, timeout: float = 60) -> None:
        """Start everything, in order; on any failure stop what started and raise."""
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            raise RuntimeError(HAPROXY_HINT)
        try:
            self._start(haproxy, timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, haproxy: str, timeout: float) -> None:
        from ztgate.cli.init import config_text, initialise
        from ztgate.config import load_settings
        from ztgate.store.postgres_server import PostgresServer
        from ztgate.store.redis_server import RedisServer

        self.workdir.mkdir(parents=True, exist_ok=True)
        redis = RedisServer()
        self._redis = redis
        redis.start()
        self.lines.append(f"redis      {redis.url} (hot state; data in {redis.directory})")
        postgres = PostgresServer()
        self._postgres = postgres
        postgres.start()
        url = postgres.create_database("ztgate")
        self.lines.append(f"postgresql {url} (durable store; data in {postgres.data})")
        text = self.config_text if self.config_text is not None else config_text(demo=True)
        self.config.write_text(with_store(text, url, redis.url), encoding="utf-8")
        initialise(self.config, demo=False, force=False)  # keys, CA, policies, schema
        settings = load_settings(self.config)
        if settings.demo.tools:
            log = self.workdir / "demo-tools.log"
            command = [sys.executable, "-m", "uvicorn", "--factory", "--no-access-log"]
            command += ["--host", "127.0.0.1", "--port", str(settings.demo.port)]
            tools = self._spawn([*command, "ztgate.demo.tools:create_tools_app"], log)
            tools_url = f"http://127.0.0.1:{settings.demo.port}"
            _wait_ready(f"{tools_url}/", tools, log, timeout, any_answer=True)
            self.lines.append(f"demo tools http://127.0.0.1:{settings.demo.port}")
        ports = list(self.replica_ports) or [free_port() for _ in range(self.replicas)]
        for number, port in enumerate(ports[: self.replicas], 1):
            replica = Replica(f"replica-{number}", port, self.workdir / f"replica-{number}.log")
            self.members.append(replica)
            replica.process = self.spawn_replica(replica)
        for replica in self.members:
            self.wait_ready(replica, timeout)
            self.lines.append(f"{replica.name:<10} {replica.url} (log {replica.log})")
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(
            haproxy_config(
                self.host, self.port, [(r.name, r.port) for r in self.members], self.stats_socket
            )
        )
        log = self.workdir / "haproxy.log"
        self._haproxy = self._spawn([haproxy, "-db", "-f", str(cfg)], log)
        _wait_ready(f"{self.url}/readyz", self._haproxy, log, timeout)
        self.lines.append(f"haproxy    {self.url} (config {cfg})")

    def wait_ready(self, replica: Replica, timeout: float = 60) -> None:
        """Wait until `replica` answers `GET /readyz` with 200."""
        if replica.process is None:
            raise RuntimeError(f"{replica.name} is not running")
        _wait_ready(f"{replica.url}/readyz", replica.process, replica.log, timeout)

    def restart(self, replica: Replica, timeout: float = 60) -> None:
        """Start `replica` again (after `kill`) and wait until it is ready."""
        replica.process = self.spawn_replica(replica)
        self.wait_ready(replica, timeout)

    def spawn_replica(self, replica: Replica) -> subprocess.Popen[bytes]:
        """Start `replica` (again): `ztgate serve` on its port, the demo tools not in it.

        The first replica serves the Workload API on the config's socket (where
        `ztgate call` and the SDK look by default); each other one on a socket
        of its own beside it (two servers cannot share one socket path).
        """
        command = [sys.executable, "-m", "ztgate", "--config", str(self.config), "serve"]
        command += ["--port", str(replica.port)]
        env = {"ZTGATE_DEMO__TOOLS": "false"}
        if self.members and replica is not self.members[0]:
            from ztgate.config import load_settings

            default = load_settings(self.config).identity.workload_socket
            env["ZTGATE_IDENTITY__WORKLOAD_SOCKET"] = str(
                default.with_name(f"{default.stem}-{replica.name}{default.suffix}")
            )
        return self._spawn(command, replica.log, **env)

    def _spawn(self, command: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(  # noqa: S603 - our own programs, fixed arguments
                command,
                cwd=self.workdir,
                env=child_env(**env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._processes.append(process)
        return process

    def stop(self) -> None:
        """Stop the balancer, the replicas, the tools, PostgreSQL and Redis (in that order)."""
        for process in reversed(self._processes):
            with contextlib.suppress(Exception):
                stop_process(process)
        self._processes.clear()
        from ztgate.store.postgres_server import PostgresServer
        from ztgate.store.redis_server import RedisServer

        postgres, self._postgres = self._postgres, None
        if isinstance(postgres, PostgresServer):
            with contextlib.suppress(Exception):
                postgres.close()
        redis, self._redis = self._redis, None
        if isinstance(redis, RedisServer):
            redis.close()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
