"""Starting bwrap with the enclave's environment, without putting a value on a command line.

Run on the host as a script (`python -I -S launch.py BWRAP ARGS...`,
standard library only, so it starts fast). It reads the variables named
`ZTGATE_ENCLAVE_ENV_<NAME>` from its own environment, writes `--clearenv`
and one `--setenv NAME VALUE` for each to a pipe (and, given `--seccomp
HEX`, the filter to another pipe and `--seccomp <that pipe>`), and replaces
itself with `bwrap --args <pipe> ARGS...`: bwrap reads the arguments from the pipe, so
secrets never show in the process list, and nothing else of the host's
environment (HOME, USER ... that the MCP SDK passes on) reaches the enclave.
"""

from __future__ import annotations

import os
import sys

ENV_PREFIX = "ZTGATE_ENCLAVE_ENV_"
# What fits in a pipe's buffer (64 KiB on Linux) before anyone reads it.
MAX_ENV_BYTES = 60_000


def environment_args(environ: dict[str, str]) -> bytes:
    """`--clearenv` and a `--setenv` for each prefixed variable, NUL-separated.

    Raises:
        ValueError: the variables do not fit in a pipe, or hold a NUL.
    """
    args = ["--clearenv"]
    for key in sorted(environ):
        if key.startswith(ENV_PREFIX):
            args += ["--setenv", key[len(ENV_PREFIX) :], environ[key]]
    if any("\0" in arg for arg in args):
        raise ValueError("an environment variable holds a NUL character")
    data = b"".join(arg.encode() + b"\0" for arg in args)
    if len(data) > MAX_ENV_BYTES:
        raise ValueError(f"the enclave's environment is larger than {MAX_ENV_BYTES} bytes")
    return data


def _pipe_with(data: bytes) -> int:
    """A pipe's read end (inheritable) holding `data`, which must fit in its buffer."""
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    os.set_inheritable(read_end, True)
    return read_end


def main(argv: list[str]) -> int:  # returns only on an error; else it is bwrap
    """Exec bwrap with the environment (and the seccomp filter) on pipes, then the rest of argv.

    Usage: `launch.py [--seccomp HEX] BWRAP ARGS...`.
    """
    seccomp = b""
    if argv[:1] == ["--seccomp"] and len(argv) > 1:
        seccomp = bytes.fromhex(argv[1])
        argv = argv[2:]
    if not argv or len(seccomp) > MAX_ENV_BYTES:
        print("launch: usage: launch.py [--seccomp HEX] BWRAP ARGS...", file=sys.stderr)
        return 2
    try:
        data = environment_args(dict(os.environ))
    except ValueError as exc:
        print(f"launch: {exc}", file=sys.stderr)
        return 2
    if seccomp:
        data += b"--seccomp\0" + str(_pipe_with(seccomp)).encode() + b"\0"
    bwrap, *rest = argv
    arguments = _pipe_with(data)
    os.execve(bwrap, [bwrap, "--args", str(arguments), *rest], {})  # noqa: S606 - no shell


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
