"""A task's secrets for its instance of a stdio MCP server, from the operator's secrets command.

A server that runs one instance per task (`per_task`) may name a secrets
command (`ztgate mcp add --secrets-command`), in the manner of AWS's
`credential_process`: when a task's instance starts, ztgate runs it (on
the host, as the gateway's user, never in the enclave, without a shell)
with only `PATH` and these in its environment:

    ZTGATE_SERVER   the server's name
    ZTGATE_AGENT    the agent's SPIFFE ID
    ZTGATE_TASK_ID  the task's id

It prints one JSON object mapping environment variable names to strings
(`{"GITHUB_TOKEN": "…"}`), typically credentials it has just minted for
that task from a secret store, and exits 0. They are put in the
instance's environment (on a pipe, never on a command line) and nowhere
else: never stored, logged or audited. Anything else — a non-zero exit, no
answer within the timeout, output that is not such an object, too many or
too long values, a name the enclave sets itself — and the instance does not
start: the call fails (fail closed). Its standard error is discarded: it
may hold secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Sequence
from typing import Final

import orjson

from ztgate.errors import UpstreamError

MAX_OUTPUT_BYTES: Final = 65536
MAX_SECRETS: Final = 64
MAX_VALUE_CHARS: Final = 8192
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Set inside every enclave (or by its relay): a secret may not replace them.
RESERVED: Final = frozenset(
    {"PATH", "HOME", "TMPDIR", "LANG", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"}
)


async def task_secrets(
    command: Sequence[str], *, server: str, agent: str, task_id: str, timeout: float = 10.0
) -> dict[str, str]:
    """The secrets `command` prints for the task's instance of `server`.

    Raises:
        UpstreamError: the command failed, timed out or printed no valid object.
    """
    what = f"MCP server {server}: the secrets command"
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ZTGATE_SERVER": server,
        "ZTGATE_AGENT": agent,
        "ZTGATE_TASK_ID": task_id,
    }
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=environment,
        )
    except OSError as exc:
        raise UpstreamError(f"{what} cannot be run ({type(exc).__name__})") from exc
    assert process.stdout is not None  # noqa: S101 - asked for above
    try:
        async with asyncio.timeout(timeout):
            output = await _read_at_most(process.stdout, MAX_OUTPUT_BYTES + 1)
            if len(output) > MAX_OUTPUT_BYTES:
                raise UpstreamError(f"{what} printed more than {MAX_OUTPUT_BYTES} bytes")
            status = await process.wait()
    except TimeoutError as exc:
        raise UpstreamError(f"{what} did not answer within {timeout:g}s") from exc
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if status != 0:
        raise UpstreamError(f"{what} failed (exit status {status})")
    return _secrets(output, what)


async def _read_at_most(stream: asyncio.StreamReader, limit: int) -> bytes:
    """What `stream` holds until its end, or its first `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _secrets(output: bytes, what: str) -> dict[str, str]:
    """The object the command printed, checked (the values never in an error)."""
    try:
        found = orjson.loads(output)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"{what} printed no JSON object") from exc
    if not isinstance(found, dict):
        raise UpstreamError(f"{what} printed no JSON object")
    if len(found) > MAX_SECRETS:
        raise UpstreamError(f"{what} printed more than {MAX_SECRETS} secrets")
    for name, value in found.items():
        if not _ENV_NAME.fullmatch(name) or name.upper() in RESERVED:
            raise UpstreamError(f"{what} printed a name that cannot be a secret: {name[:64]!r}")
        if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS or "\0" in value:
            raise UpstreamError(
                f"{what}: the value of {name} is not a string of at most "
                f"{MAX_VALUE_CHARS} characters without NUL"
            )
    return found
