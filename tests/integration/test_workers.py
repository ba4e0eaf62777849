"""`[gateway] workers = N`: N processes on one socket, only with Redis and PostgreSQL.

With the hot state in Redis and the store on PostgreSQL, `ztgate serve`
starts N worker processes accepting on one listening socket and supervises
them: calls on many connections are served, and a worker SIGKILLed is
started again while the other serves (that the hot state in Redis refuses
on one gateway a proof used on another is `test_hot_state_redis.py`'s).
With the hot state in the process or the store on SQLite, it refuses to
start, in one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ztgate.ports import free_port
from ztgate.store.postgres_server import PostgresServer
from ztgate.store.redis_server import RedisServer
from ztgate.testing import make_settings

from .harness import Upstream, clean_env, gateway_toml, run_cli

pytestmark = pytest.mark.slow

TAG = "workers"


def _tools(upstream: Upstream) -> list[dict[str, object]]:
    return [
        {
            "name": "echo",
            "url": f"{upstream.url}/echo/{TAG}",
            "risk": "read",
            "input_schema": {"type": "object"},
        }
    ]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
                found.append(int(entry.name))
    return found


class Served:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("workers")
    port = free_port()
    with RedisServer() as redis, PostgresServer() as postgres:
        url = postgres.create_database("ztgate")
        toml = "[limits]\nburst_calls_per_second = 0\n\n" + gateway_toml(
            _tools(upstream),
            gateway={"workers": 2, "port": port},
            store={"url": url, "hot_state_url": redis.url},
        )
        make_settings(workdir, toml)
        log = workdir / "gateway.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "ztgate", "--config", str(workdir / "ztgate.toml"), "serve"],
                cwd=workdir,
                env=clean_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait(f"http://127.0.0.1:{port}", process, log)
            yield Served(process, f"http://127.0.0.1:{port}", log)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("not ready: " + log.read_text(errors="replace")[-3000:])


def _calls(url: str, count: int) -> list[int]:
    # A new connection per call: the kernel hands each to one of the workers.
    return [
        httpx.post(
            f"{url}/v1/calls", json={"tool": "echo", "arguments": {"n": i}}, timeout=10
        ).status_code
        for i in range(count)
    ]


def test_two_workers_serve_and_a_killed_one_is_started_again(served: Served) -> None:
    workers = _children(served.process.pid)
    assert len(workers) == 2, served.log.read_text()[-3000:]
    assert _calls(served.url, 20) == [200] * 20
    os.kill(workers[0], signal.SIGKILL)
    assert _calls(served.url, 10) == [200] * 10  # the other worker serves meanwhile
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = _children(served.process.pid)
        if len(now) == 2 and workers[0] not in now:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(served.log.read_text()[-3000:])
    assert "starting it again" in served.log.read_text()
    assert _calls(served.url, 10) == [200] * 10


@pytest.mark.parametrize(
    ("store", "reason"),
    [
        ({}, "needs the hot state in Redis"),
        ({"hot_state_url": "redis://127.0.0.1:9/0"}, "needs the store on PostgreSQL"),
    ],
)
def test_several_workers_without_shared_state_refuse_to_start(
    tmp_path: Path, store: dict[str, str], reason: str
) -> None:
    make_settings(tmp_path, gateway_toml([], gateway={"workers": 2}))
    text = (tmp_path / "ztgate.toml").read_text()
    if store:
        text += "[store]\n" + "".join(f'{k} = "{v}"\n' for k, v in store.items())
    (tmp_path / "ztgate.toml").write_text(text)
    done = run_cli(tmp_path / "ztgate.toml", "serve", timeout=30)
    assert done.returncode == 1
    assert reason in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_workers_that_cannot_start_stop_the_supervisor(tmp_path: Path) -> None:
    """PostgreSQL answers, Redis does not: no worker starts, and `ztgate serve` exits 1."""
    with PostgresServer() as postgres:
        url = postgres.create_database("ztgate")
        dead = free_port()
        toml = gateway_toml(
            [],
            gateway={"workers": 2},
            store={"url": url, "hot_state_url": f"redis://127.0.0.1:{dead}/0"},
        )
        make_settings(tmp_path, toml)
        done = run_cli(tmp_path / "ztgate.toml", "serve", timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "before serving: stopping" in done.stdout + done.stderr
