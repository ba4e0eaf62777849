"""Whether an enclave can be created here: bwrap is there, and a throw-away sandbox runs.

The probe builds the same isolation as an enclave (namespaces, dropped
capabilities, the read-only system) around `true`, and, when ztgate is
root, checks that the sandbox's process is not: an enclave that cannot be
built exactly is not started (fail closed).
"""

from __future__ import annotations

import asyncio
import os

from ztgate.enclave.sandbox import SandboxOptions, isolation_args, system_args
from ztgate.enclave.spec import SandboxUnavailableError

PROBE_TIMEOUT_SECONDS = 10.0


def running_as_root() -> bool:
    """True when ztgate runs as root (enclaves then switch to their own user)."""
    return os.geteuid() == 0


async def check_sandbox(options: SandboxOptions) -> None:
    """Create a throw-away sandbox and run `true` in it.

    Raises:
        SandboxUnavailableError: bwrap is missing, or the sandbox could not be created.
    """
    bwrap = options.bwrap_path()
    if bwrap is None:
        raise SandboxUnavailableError(
            f"bubblewrap ({options.bwrap}) is not installed: apt-get install bubblewrap"
        )
    as_root = running_as_root()
    args = [bwrap, *isolation_args(as_root=as_root), *system_args(), "--", "true"]
    try:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            _, stderr = await process.communicate()
    except TimeoutError as exc:
        process.kill()
        raise SandboxUnavailableError("bubblewrap's probe did not finish in time") from exc
    except OSError as exc:
        raise SandboxUnavailableError(f"bubblewrap cannot run: {exc.strerror}") from exc
    if process.returncode != 0:
        why = stderr.decode(errors="replace").strip().splitlines()
        detail = why[-1] if why else f"exit status {process.returncode}"
        raise SandboxUnavailableError(f"bubblewrap cannot create a sandbox here: {detail}")
