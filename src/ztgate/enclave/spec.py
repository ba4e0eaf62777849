"""What an enclave runs and what it may touch; the API for starting stdio MCP servers in one.

An enclave is a bubblewrap sandbox around one stdio MCP server: a fresh
network namespace whose only way out is the egress proxy, a read-only
root built from a few system directories, a private /tmp, only the
configured paths, a scrubbed environment, resource limits and no new
privileges (docs/enclaves.md).

The API, for the MCP upstream code:

    from ztgate.enclave import Enclave, EnclaveSpec, EnclaveLimits, SandboxUnavailableError

    spec = EnclaveSpec(
        name="files",                          # the MCP server's name
        command="/usr/bin/python3", args=("server.py",),
        env={"LOG_LEVEL": "info"},             # set inside; never on a command line
        secrets={"API_TOKEN": "..."},          # per task; never logged
        read_only_paths=(Path("/srv/files"),), read_write_paths=(),
        cwd=Path("/srv/files"),
        allowed_domains=("api.example.com", "*.example.org"),
        allowed_test_destinations=(),          # "127.0.0.1:8080": loopback, for tests only
        agent="spiffe://acme.example/agent/mailer", task_id="...",  # attribution, optional
        limits=EnclaveLimits(memory_bytes=1 << 30),
    )
    async with Enclave(spec, proxy, options) as enclave:  # proxy: a started EgressProxy
        wrapped = enclave.command()            # WrappedCommand(command, args, env)
        params = StdioServerParameters(command=wrapped.command, args=list(wrapped.args),
                                       env=dict(wrapped.env))
        ...                                    # the SDK's stdio_client(params)

`Enclave.start()` (or entering it) checks that a sandbox can be created
here and raises `SandboxUnavailableError` if not — the server must then not
start — unless `spec.sandbox` is False, in which case it logs a warning
(every start) and `command()` returns the server's own command, unconfined.
It serves the enclave's Unix socket on the egress proxy; `stop()` (or
leaving it) removes it, so keep the `Enclave` started for as long as the
server process runs (one `Enclave` per server process; per task when the
secrets or the attribution are the task's). `agent_domains` and
`task_domains` (None: no such list) narrow `allowed_domains` further: every
list given must allow a host. The proxy and the sandbox options come from the
gateway: `ztgate.egress.service.start_egress_proxy(settings, audit)` and
`SandboxOptions.from_settings(settings.enclaves)`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ztgate.errors import GatewayError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SandboxUnavailableError(GatewayError):
    """A sandbox cannot be created here (bubblewrap missing, or its probe failed)."""


@dataclass(frozen=True, slots=True)
class EnclaveLimits:
    """Resource limits of everything in the enclave (None: no limit of that kind)."""

    memory_bytes: int | None = 1 << 30  # RLIMIT_AS, per process
    processes: int | None = 256  # RLIMIT_NPROC, of the enclave's user
    cpu_seconds: int | None = 3600  # RLIMIT_CPU, per process
    file_size_bytes: int | None = 64 << 20  # RLIMIT_FSIZE: the largest file it may write
    open_files: int | None = 1024  # RLIMIT_NOFILE

    def as_rlimits(self) -> dict[str, int]:
        """The limits as `name=value` for the relay (`as`, `nproc`, `cpu`, `fsize`, `nofile`)."""
        pairs = {
            "as": self.memory_bytes,
            "nproc": self.processes,
            "cpu": self.cpu_seconds,
            "fsize": self.file_size_bytes,
            "nofile": self.open_files,
        }
        return {key: value for key, value in pairs.items() if value is not None}


@dataclass(frozen=True, slots=True)
class EnclaveSpec:
    """One stdio MCP server and its enclave.

    Raises:
        ValueError: the name, a path or an environment variable name is not acceptable.
    """

    name: str
    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    read_only_paths: tuple[Path, ...] = ()
    read_write_paths: tuple[Path, ...] = ()
    cwd: Path | None = None
    limits: EnclaveLimits = EnclaveLimits()
    allowed_domains: tuple[str, ...] = ()
    allowed_test_destinations: tuple[str, ...] = ()
    agent: str | None = None
    task_id: str | None = None
    agent_domains: tuple[str, ...] | None = None
    task_domains: tuple[str, ...] | None = None
    sandbox: bool = True  # False: the operator opted out; run unconfined, with a warning

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"enclave name {self.name!r}: letters, digits, '_', '.', '-'")
        for name in (*self.env, *self.secrets):
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"environment variable name {name!r} is not valid")
        for path in (*self.read_only_paths, *self.read_write_paths, self.cwd):
            if path is not None and not path.is_absolute():
                raise ValueError(f"enclave path {path} must be absolute")


@dataclass(frozen=True, slots=True)
class WrappedCommand:
    """What to hand to the MCP SDK's `StdioServerParameters`: command, args, env."""

    command: str
    args: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)
