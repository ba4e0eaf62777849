"""The bubblewrap command line of an enclave.

Inside, from nothing (bwrap's empty root):

- namespaces: network (only loopback), PID, IPC, UTS, cgroup; a user
  namespace too when ztgate is not root (bwrap needs one then);
- read-only: /usr (and the /bin, /sbin, /lib* links or directories), /etc,
  the interpreter's installation and virtual environment, the server's
  command, the configured read-only paths; read-write: the configured
  read-write paths only; /tmp a private tmpfs; /proc of the new PID
  namespace; a minimal /dev (null, zero, random, urandom, tty, shm, pts);
- the egress proxy's per-enclave socket and the relay script under
  /run/ztgate; the relay is the first process and starts the server;
- `--die-with-parent` (the enclave ends with ztgate), `--new-session` (no
  TIOCSTI into ztgate's terminal), every capability dropped (when ztgate is
  root, the relay keeps CAP_SETUID/CAP_SETGID just long enough to become
  the enclave's unprivileged user), no new privileges (bwrap sets
  PR_SET_NO_NEW_PRIVS);
- a seccomp filter refusing the system calls escapes reach for
  (seccomp.py; x86_64);
- an empty environment (`--clearenv`) but for the variables the launcher
  sets from its own environment (launch.py): values never appear on a
  command line.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ztgate.config import EnclaveSettings
from ztgate.enclave.launch import ENV_PREFIX
from ztgate.enclave.seccomp import filter_program
from ztgate.enclave.spec import EnclaveSpec

logger = logging.getLogger(__name__)

INSIDE_DIR = "/run/ztgate"
INSIDE_SOCKET = f"{INSIDE_DIR}/proxy.sock"
INSIDE_RELAY = f"{INSIDE_DIR}/relay.py"
RELAY_SCRIPT = Path(__file__).with_name("relay.py")
LAUNCH_SCRIPT = Path(__file__).with_name("launch.py")
INSIDE_TMP = "/tmp"  # noqa: S108 - the enclave's own private tmpfs
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": INSIDE_TMP,
    "TMPDIR": INSIDE_TMP,
    "LANG": "C.UTF-8",
}
_SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@dataclass(frozen=True, slots=True)
class SandboxOptions:
    """How enclaves are built on this machine."""

    bwrap: str = "bwrap"
    uid: int = 65534  # the enclave's user when ztgate runs as root (nobody)
    gid: int = 65534
    relay_port: int = 3128  # on the enclave's own loopback
    interpreter: str = sys.executable

    @classmethod
    def from_settings(cls, section: EnclaveSettings) -> SandboxOptions:
        """The options of `[enclaves]`."""
        return cls(
            bwrap=section.bwrap, uid=section.uid, gid=section.gid, relay_port=section.relay_port
        )

    def bwrap_path(self) -> str | None:
        """The bwrap executable, or None if there is none."""
        return shutil.which(self.bwrap)


def isolation_args(*, as_root: bool) -> list[str]:
    """Namespaces, session, capabilities: the part every enclave (and the probe) shares."""
    args = [
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "enclave",
        "--cap-drop",
        "ALL",
    ]
    if as_root:
        # No user namespace: one mapping our uid 0 would be the host's root.
        # The relay switches to the enclave's user with these two and keeps none.
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user", "--disable-userns"]
    return args


def system_args() -> list[str]:
    """The read-only system: /usr, its links (or directories), /etc, /proc, /dev, /tmp."""
    args = ["--ro-bind", "/usr", "/usr"]
    for path in _SYSTEM_LINKS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--tmpfs", INSIDE_TMP]
    return args


def bind_args(read_only: list[Path], read_write: list[Path]) -> list[str]:
    """Bind mounts of these host paths at the same place, with readable parent directories."""
    wanted = sorted(
        {(str(p), False) for p in read_only} | {(str(p), True) for p in read_write},
        key=lambda item: (item[0].count("/"), item[0]),
    )
    parents: list[str] = []
    for path, _ in wanted:
        for ancestor in reversed(PurePosixPath(path).parents):
            text = str(ancestor)
            if text != "/" and text not in parents and not _covered(text):
                parents.append(text)
    args: list[str] = []
    for parent in sorted(parents, key=lambda p: p.count("/")):
        args += ["--perms", "0755", "--dir", parent]
    for path, writable in wanted:
        if not _covered(path):
            args += ["--bind" if writable else "--ro-bind", path, path]
    return args


def _covered(path: str) -> bool:
    """True if the system binds already show `path` (/usr/..., /etc/...)."""
    return any(path == top or path.startswith(top + "/") for top in ("/usr", "/etc", "/proc"))


def interpreter_paths(interpreter: str) -> list[Path]:
    """What the interpreter needs: its virtual environment and its installation."""
    prefixes = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    real = Path(interpreter).resolve()
    if not any(real.is_relative_to(p) for p in prefixes):
        prefixes.add(real.parent)
    return sorted(prefixes)


def command_path(command: str) -> Path | None:
    """The server's executable on the host, if it is a file outside the system binds."""
    found = shutil.which(command)
    if found is None:
        return None
    real = Path(found).resolve()
    return None if _covered(str(real)) else real


def bwrap_args(
    spec: EnclaveSpec, socket: Path, options: SandboxOptions, *, as_root: bool
) -> list[str]:
    """bwrap's arguments, up to and including the relay's command line and the server's."""
    read_only = [*interpreter_paths(options.interpreter), *spec.read_only_paths]
    own = command_path(spec.command)
    if own is not None:
        read_only.append(own)
    args = isolation_args(as_root=as_root) + system_args()
    args += bind_args(read_only, list(spec.read_write_paths))
    args += ["--perms", "0755", "--dir", "/run", "--perms", "0755", "--dir", INSIDE_DIR]
    args += ["--ro-bind", str(RELAY_SCRIPT), INSIDE_RELAY, "--bind", str(socket), INSIDE_SOCKET]
    args += ["--chdir", str(spec.cwd or INSIDE_TMP)]
    relay = [options.interpreter, "-I", "-S", INSIDE_RELAY]
    relay += ["--listen", str(options.relay_port), "--socket", INSIDE_SOCKET]
    if as_root:
        relay += ["--user", f"{options.uid}:{options.gid}"]
    for name, value in spec.limits.as_rlimits().items():
        relay += ["--rlimit", f"{name}={value}"]
    return [*args, "--", *relay, "--", spec.command, *spec.args]


def launch_command(
    spec: EnclaveSpec, socket: Path, options: SandboxOptions, bwrap: str, *, as_root: bool
) -> tuple[str, tuple[str, ...]]:
    """The launcher's command and arguments: the seccomp filter, bwrap and its arguments."""
    launcher = ["-I", "-S", str(LAUNCH_SCRIPT)]
    program = filter_program()
    if program is not None:
        launcher += ["--seccomp", program.hex()]
    else:
        logger.warning(
            "enclave %s: no seccomp filter on this architecture (%s): namespaces, mounts and "
            "ptrace are not refused by a filter",
            spec.name,
            platform.machine(),
        )
    args = bwrap_args(spec, socket, options, as_root=as_root)
    return options.interpreter, (*launcher, bwrap, *args)


def enclave_environment(spec: EnclaveSpec) -> dict[str, str]:
    """The environment inside (the relay adds the proxy variables), prefixed for the launcher."""
    inside = {**BASE_ENV, **spec.env, **spec.secrets}
    return {ENV_PREFIX + name: value for name, value in inside.items()}
