"""Execution enclaves: stdio MCP servers in a bubblewrap sandbox (docs/enclaves.md)."""

from ztgate.enclave.probe import check_sandbox
from ztgate.enclave.runtime import Enclave
from ztgate.enclave.sandbox import SandboxOptions
from ztgate.enclave.spec import (
    EnclaveLimits,
    EnclaveSpec,
    SandboxUnavailableError,
    WrappedCommand,
)

__all__ = [
    "Enclave",
    "EnclaveLimits",
    "EnclaveSpec",
    "SandboxOptions",
    "SandboxUnavailableError",
    "WrappedCommand",
    "check_sandbox",
]
