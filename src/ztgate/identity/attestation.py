"""Unix workload attestation: which process is on the other end of a Unix socket.

The kernel tells a Unix socket server its peer's pid, uid and gid
(SO_PEERCRED, captured at connect time); /proc tells which executable that pid
runs. A pid can be recycled, though: if the caller exits and another process
gets its pid before we read /proc, we would describe the wrong process. Linux
6.5+ also hands out a pidfd for the peer (SO_PEERPIDFD), which keeps naming the
original process; if that process is still alive after /proc was read, the pid
was not recycled in between. Without SO_PEERPIDFD the guard is weaker (the
process is checked to be alive, not to be the same one), and we log that once.

Anything that cannot be established (the process is gone, its executable
cannot be read) yields no selectors at all: attestation fails closed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)

# Not in Python 3.11's socket module; the value is Linux's (asm-generic/socket.h).
SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_CHUNK = 1 << 20


class _Socket(Protocol):
    def getsockopt(self, level: int, option: int, buflen: int = ..., /) -> int | bytes: ...


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """What the kernel says about a Unix socket's peer, as of its connect()."""

    pid: int
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class Selectors:
    """What attestation established about a calling process."""

    pid: int
    uid: int
    gid: int
    exe_path: str
    exe_sha256: str

    def as_strings(self) -> frozenset[str]:
        """The selectors in the registration entries' syntax."""
        return frozenset(
            {
                f"unix:uid:{self.uid}",
                f"unix:gid:{self.gid}",
                f"unix:path:{self.exe_path}",
                f"unix:sha256:{self.exe_sha256}",
            }
        )


def process_selectors() -> list[str]:
    """The selectors this very process attests with: its uid and its interpreter's real path.

    What registering the running program as an agent takes (the demo, the
    tests, a script that is its own agent).
    """
    return [f"unix:uid:{os.getuid()}", f"unix:path:{os.path.realpath(sys.executable)}"]


def peer_credentials(sock: _Socket) -> tuple[PeerCredentials, int | None]:
    """The peer's credentials and, where the kernel offers one, a pidfd for it.

    The caller owns the pidfd and must close it (`Attestor.attest` does).

    Raises:
        OSError: not a connected Unix socket.
    """
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    assert isinstance(raw, bytes)  # noqa: S101 - getsockopt with a buffer length returns bytes
    pid, uid, gid = _UCRED.unpack(raw)
    pidfd: int | None
    try:
        value = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
        pidfd = value if isinstance(value, int) and value >= 0 else None
    except OSError:
        pidfd = None
    return PeerCredentials(pid, uid, gid), pidfd


class Attestor:
    """Turns peer credentials into selectors, reading /proc; caches executable hashes."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._proc = proc
        self._hashes: dict[tuple[int, int, int, int], str] = {}
        self._warned = False

    def attest(self, creds: PeerCredentials, pidfd: int | None = None) -> Selectors | None:
        """The caller's selectors, or None if its process cannot be inspected (fail closed).

        Closes `pidfd`.
        """
        try:
            if creds.pid <= 0:
                return None
            try:
                exe_path, exe_sha256 = self._executable(creds.pid)
            except OSError as exc:
                logger.info("cannot inspect pid %d: %s", creds.pid, exc.strerror or exc)
                return None
            if not self._still_the_same(creds.pid, pidfd):
                logger.info("pid %d exited while it was being attested", creds.pid)
                return None
            return Selectors(creds.pid, creds.uid, creds.gid, exe_path, exe_sha256)
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _executable(self, pid: int) -> tuple[str, str]:
        link = self._proc / str(pid) / "exe"
        # readlink needs ptrace rights over the caller (same uid, or CAP_SYS_PTRACE).
        exe_path = os.readlink(link)
        # Open the link, not the path it names: that is the binary actually
        # mapped, even if the path was replaced or deleted since.
        with open(link, "rb") as binary:
            info = os.fstat(binary.fileno())
            key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
            digest = self._hashes.get(key)
            if digest is None:
                hasher = hashlib.sha256()
                while chunk := binary.read(_CHUNK):
                    hasher.update(chunk)
                digest = self._hashes[key] = hasher.hexdigest()
        return exe_path, digest

    def _still_the_same(self, pid: int, pidfd: int | None) -> bool:
        if pidfd is None:
            if not self._warned:
                self._warned = True
                logger.warning("SO_PEERPIDFD is unavailable: pid reuse cannot be ruled out")
            return (self._proc / str(pid)).exists()
        # fdinfo's "Pid:" is the pidfd's process's pid, or -1 once it has exited.
        # Unlike pidfd_send_signal(fd, 0) it needs no permission to signal the caller.
        try:
            fdinfo = (self._proc / "self" / "fdinfo" / str(pidfd)).read_text()
        except OSError:
            return False
        for line in fdinfo.splitlines():
            if line.startswith("Pid:"):
                return line.split()[1:2] == [str(pid)]
        return False
