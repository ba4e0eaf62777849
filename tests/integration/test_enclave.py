"""Enclaves for real: bubblewrap sandboxes whose only way out is the egress proxy.

Skipped only where the kernel forbids namespaces (`unshare --net true`
fails); bubblewrap itself must be installed (`make test` installs it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from ztgate.egress.proxy import EgressProxy
from ztgate.enclave import (
    Enclave,
    EnclaveLimits,
    EnclaveSpec,
    SandboxOptions,
    SandboxUnavailableError,
    WrappedCommand,
)
from ztgate.store.database import Database

from .egress_kit import HttpServer, TableResolver, audit_log, http_server, wait_for_records

SERVER = Path(__file__).with_name("enclave_server.py")
CANARY = "ZTGATE_TEST_HOST_ONLY"


def _namespaces_allowed() -> bool:
    command = ["unshare", "--net", "true"] if os.geteuid() == 0 else ["unshare", "-rn", "true"]
    try:
        return subprocess.run(command, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(
    not _namespaces_allowed(),
    reason="this kernel forbids network namespaces here (`unshare --net true` fails)",
)


class Host:
    def __init__(
        self, proxy: EgressProxy, database: Database, allowed: HttpServer, other: HttpServer
    ):
        self.proxy, self.database, self.allowed, self.other = proxy, database, allowed, other

    def spec(self, **changes: object) -> EnclaveSpec:
        fields: dict[str, object] = {
            "name": "tester",
            "command": sys.executable,
            "args": (),
            "allowed_test_destinations": (f"127.0.0.1:{self.allowed.port}",),
            "agent": "spiffe://ztgate.local/agent/tester",
            "task_id": "task-42",
        }
        fields.update(changes)
        return EnclaveSpec(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[Host]:
    async with (
        audit_log(tmp_path) as (log, database),
        http_server() as allowed,
        http_server() as other,
    ):
        proxy = EgressProxy(log, TableResolver({}))
        yield Host(proxy, database, allowed, other)
        await proxy.stop()


async def _run(wrapped: WrappedCommand, timeout: float = 30) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        wrapped.command,
        *wrapped.args,
        env=dict(wrapped.env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _python(host: Host, code: str, **changes: object) -> tuple[int, str, str]:
    async with Enclave(host.spec(args=("-c", code), **changes), host.proxy) as enclave:
        return await _run(enclave.command())


async def test_the_only_way_out_is_the_proxy_and_it_is_audited(host: Host) -> None:
    code = f"""
import socket, urllib.request, urllib.error
for address in [("127.0.0.1", {host.allowed.port}), ("10.0.0.1", 80), ("93.184.215.14", 80)]:
    try:
        socket.create_connection(address, timeout=2)
        print("direct: connected", address)
    except OSError as exc:
        print("direct: failed", type(exc).__name__)
print("allowed:", urllib.request.urlopen("http://127.0.0.1:{host.allowed.port}/in").read().decode())
try:
    urllib.request.urlopen("http://127.0.0.1:{host.other.port}/out")
except urllib.error.HTTPError as exc:
    print("refused:", exc.code, exc.read().decode().strip())
"""
    status, out, err = await _python(host, code)
    assert status == 0, err
    assert out.count("direct: failed") == 3 and "connected" not in out
    assert f"allowed: hello from {host.allowed.port}" in out
    assert "refused: 403 the host is a loopback address" in out
    assert host.other.requests == []
    records = await wait_for_records(host.database, 3)
    denied = [r for r in records if r["outcome"] == "deny"]
    assert len(denied) == 1 and denied[0]["detail"]["port"] == host.other.port
    assert denied[0]["agent"] == "spiffe://ztgate.local/agent/tester"
    assert denied[0]["task_id"] == "task-42"
    assert {r["detail"]["listener"] for r in records} == {"unix"}
    assert {r["detail"]["enclave"] for r in records} == {"tester"}


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the seccomp filter is x86_64 only")
async def test_the_seccomp_filter_refuses_what_escapes_use(host: Host) -> None:
    code = """
import ctypes, errno, os, threading
libc = ctypes.CDLL(None, use_errno=True)
def call(number, *args):
    result = libc.syscall(number, *args)
    return "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]
print("unshare", call(272, 0x10000000))
print("clone3", call(435, 0, 0))
print("io_uring_setup", call(425, 1, 0))
print("ptrace", call(101, 0, 0, 0, 0))
print("bpf", call(321, 0, 0, 0))
print("seccomp", open("/proc/self/status").read().split("Seccomp:")[1].split()[0])
thread = threading.Thread(target=lambda: None)
thread.start()
thread.join()
pid = os.fork()
if pid == 0:
    os._exit(0)
print("fork and threads", os.waitpid(pid, 0)[1])
"""
    status, out, err = await _python(host, code)
    assert status == 0, err
    for line in (
        "unshare EPERM",
        "clone3 ENOSYS",
        "io_uring_setup ENOSYS",
        "ptrace EPERM",
        "bpf EPERM",
        "seccomp 2",
        "fork and threads 0",
    ):
        assert line in out, out


async def test_the_hosts_abstract_unix_sockets_are_out_of_reach(host: Host) -> None:
    import socket

    name = f"\0ztgate-enclave-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(name)
        listener.listen()
        code = f"""
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect({name!r})
    print("connected")
except OSError as exc:
    print("refused", type(exc).__name__)
"""
        status, out, err = await _python(host, code)
    assert status == 0, err
    assert out.startswith("refused")


async def test_only_configured_paths_are_visible_and_root_is_read_only(
    host: Host, tmp_path: Path
) -> None:
    shown = tmp_path / "shown"
    shown.mkdir()
    (shown / "data.txt").write_text("visible")
    (shown / "data.txt").chmod(0o644)
    shown.chmod(0o755)
    writable = tmp_path / "writable"
    writable.mkdir()
    writable.chmod(0o777)
    hidden = tmp_path / "hidden.txt"
    hidden.write_text("secret")
    code = f"""
import os
def attempt(what, action):
    try:
        action()
        print(what, "ok")
    except OSError as exc:
        print(what, "failed", type(exc).__name__)
print("read shown:", open("{shown}/data.txt").read())
attempt("read hidden", lambda: open("{hidden}").read())
attempt("read root home", lambda: os.listdir("/root/.ssh"))
attempt("write root", lambda: open("/evil", "w"))
attempt("write usr", lambda: open("/usr/evil", "w"))
attempt("write shown", lambda: open("{shown}/new", "w"))
attempt("write writable", lambda: open("{writable}/new", "w").write("x"))
attempt("write tmp", lambda: open("/tmp/new", "w").write("x"))
status = open("/proc/self/status").read()
print("nnp", [l for l in status.splitlines() if l.startswith("NoNewPrivs")][0].split()[1])
print("capeff", [l for l in status.splitlines() if l.startswith("CapEff")][0].split()[1])
print("uid", os.getuid())
print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
"""
    status, out, err = await _python(
        host, code, read_only_paths=(shown,), read_write_paths=(writable,)
    )
    assert status == 0, err
    assert "read shown: visible" in out
    for refused in ("read hidden", "read root home", "write root", "write usr", "write shown"):
        assert f"{refused} failed" in out, out
    assert "write writable ok" in out and "write tmp ok" in out
    assert (writable / "new").read_text() == "x"
    assert "nnp 1" in out and "capeff 0000000000000000" in out
    if os.geteuid() == 0:
        assert "uid 65534" in out
    pids = eval(out.split("pids ")[1].splitlines()[0])  # noqa: S307 - our own printout
    assert max(pids) < 10  # a PID namespace of its own: bwrap, the relay, the script


async def test_the_environment_is_scrubbed_and_secrets_are_injected(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CANARY, "host value")
    code = "import os, json; print(json.dumps(dict(os.environ)))"
    spec = {"env": {"MODE": "test"}, "secrets": {"API_TOKEN": "s3cr3t-value"}}
    async with Enclave(host.spec(args=("-c", code), **spec), host.proxy) as enclave:
        wrapped = enclave.command()
        assert "s3cr3t-value" not in " ".join(wrapped.args)  # never on a command line
        status, out, err = await _run(wrapped)
    assert status == 0, err
    import json

    env = json.loads(out)
    assert CANARY not in env and "USER" not in env and "SHELL" not in env
    assert env["API_TOKEN"] == "s3cr3t-value" and env["MODE"] == "test"
    assert env["HOME"] == "/tmp" and env["NO_PROXY"] == ""
    assert env["HTTPS_PROXY"] == env["http_proxy"] == "http://127.0.0.1:3128"
    assert not any(value.startswith("/root") for value in env.values())


async def test_resource_limits_apply(host: Host) -> None:
    code = """
import resource
print("fsize", resource.getrlimit(resource.RLIMIT_FSIZE)[0])
try:
    with open("/tmp/big", "wb") as f:
        f.write(b"x" * (2 << 20))
    print("big file written")
except OSError as exc:
    print("big file refused", exc.errno)
try:
    b = bytearray(300 << 20)
    print("allocated")
except MemoryError:
    print("memory refused")
"""
    limits = EnclaveLimits(file_size_bytes=1 << 20, memory_bytes=256 << 20)
    status, out, err = await _python(host, code, limits=limits)
    assert status == 0, err
    assert f"fsize {1 << 20}" in out
    assert "big file refused 27" in out  # EFBIG
    assert "memory refused" in out


async def test_an_mcp_server_in_an_enclave(host: Host) -> None:
    spec = host.spec(args=(str(SERVER),), read_only_paths=(SERVER,))
    async with Enclave(spec, host.proxy) as enclave:
        wrapped = enclave.command()
        params = StdioServerParameters(
            command=wrapped.command, args=list(wrapped.args), env=dict(wrapped.env)
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            assert {tool.name for tool in tools.tools} == {"fetch", "connect", "read", "env"}

            async def text(name: str, arguments: dict[str, object]) -> str:
                result = await session.call_tool(name, arguments)
                content = result.content[0]
                assert content.type == "text"
                return content.text

            allowed = f"http://127.0.0.1:{host.allowed.port}/mcp"
            assert await text("fetch", {"url": allowed}) == f"200 hello from {host.allowed.port}"
            refused = await text("fetch", {"url": f"http://127.0.0.1:{host.other.port}/"})
            assert refused == "403 the host is a loopback address"
            direct = await text("connect", {"host": "127.0.0.1", "port": host.allowed.port})
            assert direct.startswith("refused")
            assert (await text("read", {"path": "/etc/shadow"})).startswith("error")
    assert host.other.requests == []
    records = await wait_for_records(host.database, 3)
    assert [r["outcome"] for r in records].count("deny") == 1


async def test_no_sandbox_no_start(host: Host) -> None:
    options = SandboxOptions(bwrap="ztgate-no-such-bwrap")
    with pytest.raises(SandboxUnavailableError, match="not installed"):
        async with Enclave(host.spec(), host.proxy, options):
            pass
    assert host.proxy.grants.get("tester") is None


async def test_a_missing_path_stops_the_start(host: Host, tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailableError, match="does not exist"):
        async with Enclave(host.spec(read_only_paths=(tmp_path / "gone",)), host.proxy):
            pass


async def test_opting_out_warns_on_every_start(
    host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    spec = host.spec(args=("-c", "print('unconfined')"), sandbox=False, secrets={"T": "v"})
    with caplog.at_level(logging.WARNING, logger="ztgate.enclave.runtime"):
        for _ in range(2):
            async with Enclave(spec, host.proxy) as enclave:
                wrapped = enclave.command()
    assert wrapped == WrappedCommand(sys.executable, spec.args, {"T": "v"})
    warnings = [r for r in caplog.records if "WITHOUT a sandbox" in r.getMessage()]
    assert len(warnings) == 2
