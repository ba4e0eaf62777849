"""Whether an enclave can be created here: bwrap is there, and a throw-away sandbox runs.

`check_sandbox` builds the same isolation as an enclave (namespaces,
dropped capabilities, the read-only system) around `true`: an enclave that
cannot be built is not started (fail closed). `inspect_sandbox` goes
further, for `ztgate enclave check`: it starts a whole throw-away enclave
(launcher, relay, user switch, limits) and reports what the process inside
can see and do.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path

from ztgate.enclave.sandbox import (
    SandboxOptions,
    enclave_environment,
    isolation_args,
    launch_command,
    system_args,
)
from ztgate.enclave.spec import EnclaveSpec, SandboxUnavailableError

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


# Run inside a test enclave: what it can see and do (printed as JSON).
_INSPECT = """
import json, os, socket
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
def refused(action):
    try:
        action()
        return False
    except OSError:
        return True
found = {
    "uid": os.getuid(),
    "no_new_privileges": status["NoNewPrivs"].strip() == "1",
    "capabilities": status["CapEff"].strip(),
    "seccomp": status["Seccomp"].strip() == "2",
    "network_isolated": refused(lambda: socket.create_connection(("1.1.1.1", 53), timeout=2)),
    "root_read_only": refused(lambda: open("/ztgate-probe", "w")),
    "top_level": sorted(os.listdir("/")),
    "environment": sorted(os.environ),
}
print(json.dumps(found))
"""


async def inspect_sandbox(options: SandboxOptions) -> dict[str, object]:
    """Start a throw-away enclave (no proxy behind it) and report what it can see and do.

    Raises:
        SandboxUnavailableError: the enclave could not be started or did not answer.
    """
    await check_sandbox(options)
    bwrap = options.bwrap_path()
    assert bwrap is not None  # noqa: S101 - checked by check_sandbox
    spec = EnclaveSpec(name="probe", command=options.interpreter, args=("-I", "-c", _INSPECT))
    with tempfile.TemporaryDirectory(prefix="ztgate-probe-") as directory:
        socket = Path(directory) / "proxy.sock"
        socket.touch()  # a placeholder: nothing is relayed
        command, args = launch_command(spec, socket, options, bwrap, as_root=running_as_root())
        process = await asyncio.create_subprocess_exec(
            command,
            *args,
            env=enclave_environment(spec),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS * 2):
                out, err = await process.communicate()
        except TimeoutError as exc:
            process.kill()
            raise SandboxUnavailableError("the test enclave did not answer in time") from exc
    try:
        found: dict[str, object] = json.loads(out)
    except ValueError as exc:
        lines = err.decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {process.returncode}"
        raise SandboxUnavailableError(f"the test enclave failed: {why}") from exc
    return found
