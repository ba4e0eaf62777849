"""Unix attestation: peer credentials, /proc, the pid-reuse guard, failing closed."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ztgate.identity.attestation import (
    Attestor,
    PeerCredentials,
    Selectors,
    peer_credentials,
    process_selectors,
)


def _own_exe() -> tuple[str, str]:
    path = os.readlink("/proc/self/exe")
    return path, hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield left, right
    left.close()
    right.close()


def _exited_child_pidfd() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    pidfd = os.pidfd_open(child.pid)
    child.wait()
    return pidfd


def test_the_peer_of_a_socketpair_is_this_process(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    creds, pidfd = peer_credentials(pair[0])
    assert creds == PeerCredentials(os.getpid(), os.getuid(), os.getgid())
    selectors = Attestor().attest(creds, pidfd)
    path, digest = _own_exe()
    assert selectors == Selectors(os.getpid(), os.getuid(), os.getgid(), path, digest)
    assert selectors.as_strings() == {
        f"unix:uid:{os.getuid()}",
        f"unix:gid:{os.getgid()}",
        f"unix:path:{path}",
        f"unix:sha256:{digest}",
    }


def test_this_kernel_offers_a_peer_pidfd(pair: tuple[socket.socket, socket.socket]) -> None:
    """Linux 6.5+; older kernels work, with a weaker pid-reuse guard."""
    release = tuple(int(p) for p in os.uname().release.split("-")[0].split(".")[:2])
    if release < (6, 5):
        pytest.skip("SO_PEERPIDFD needs Linux 6.5")
    _, pidfd = peer_credentials(pair[0])
    assert isinstance(pidfd, int)
    os.close(pidfd)


def test_the_pidfd_is_closed(pair: tuple[socket.socket, socket.socket]) -> None:
    creds, pidfd = peer_credentials(pair[0])
    Attestor().attest(creds, pidfd)
    if pidfd is not None:
        with pytest.raises(OSError):
            os.fstat(pidfd)


def test_a_recycled_pid_is_refused() -> None:
    """The pid names a live process, but not the one that connected (its pidfd is dead)."""
    creds = PeerCredentials(os.getpid(), os.getuid(), os.getgid())
    assert Attestor().attest(creds, _exited_child_pidfd()) is None


def test_a_caller_that_exited_before_attestation_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        code = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({path!r})"
        subprocess.run([sys.executable, "-c", code], check=True)
        conn, _ = server.accept()
        with conn:
            creds, pidfd = peer_credentials(conn)
            assert creds.pid != os.getpid()
            assert Attestor().attest(creds, pidfd) is None


@pytest.mark.parametrize("pid", [0, -1, 2**22 + 12345])
def test_no_such_process_gets_nothing(pid: int) -> None:
    assert Attestor().attest(PeerCredentials(pid, 0, 0)) is None


def test_without_a_pidfd_a_live_process_is_attested() -> None:
    creds = PeerCredentials(os.getpid(), os.getuid(), os.getgid())
    selectors = Attestor().attest(creds, None)
    assert selectors is not None
    assert selectors.exe_path == _own_exe()[0]


def test_executable_hashes_are_cached_by_file_identity() -> None:
    attestor = Attestor()
    creds = PeerCredentials(os.getpid(), os.getuid(), os.getgid())
    first = attestor.attest(creds)
    second = attestor.attest(creds)
    assert first == second
    assert len(attestor._hashes) == 1


def test_an_unreadable_proc_fails_closed(tmp_path: Path) -> None:
    creds = PeerCredentials(os.getpid(), os.getuid(), os.getgid())
    assert Attestor(proc=tmp_path).attest(creds) is None


def test_this_process_attests_with_its_uid_and_interpreter() -> None:
    assert process_selectors() == [
        f"unix:uid:{os.getuid()}",
        f"unix:path:{os.path.realpath(sys.executable)}",
    ]
