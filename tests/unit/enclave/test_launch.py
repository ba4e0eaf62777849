"""The launcher: the environment as bwrap arguments on a pipe, never on a command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ztgate.enclave.launch import ENV_PREFIX, MAX_ENV_BYTES, environment_args, main
from ztgate.enclave.sandbox import LAUNCH_SCRIPT


def test_prefixed_variables_become_setenv_after_clearenv() -> None:
    data = environment_args({ENV_PREFIX + "B": "2", "HOME": "/root", ENV_PREFIX + "A": "1"})
    assert data.split(b"\0") == [
        b"--clearenv",
        b"--setenv",
        b"A",
        b"1",
        b"--setenv",
        b"B",
        b"2",
        b"",
    ]


def test_too_much_or_a_nul_is_refused() -> None:
    with pytest.raises(ValueError, match="larger"):
        environment_args({ENV_PREFIX + "BIG": "x" * MAX_ENV_BYTES})
    with pytest.raises(ValueError, match="NUL"):
        environment_args({ENV_PREFIX + "X": "a\0b"})


def test_no_arguments_is_an_error() -> None:
    assert main([]) == 2


def test_it_execs_the_program_with_the_arguments_on_a_pipe(tmp_path: Path) -> None:
    # A script stands in for bwrap: it prints its arguments, then what the pipe holds.
    fake = tmp_path / "fake-bwrap"
    fake.write_text('#!/bin/sh\necho "$@"\ntr "\\0" " " <&"$2"\n')
    fake.chmod(0o755)
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(LAUNCH_SCRIPT), str(fake), "--unshare-net"],
        env={ENV_PREFIX + "TOKEN": "s3cr3t", "OTHER": "x"},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    first, second = result.stdout.splitlines()[:2]
    assert first.startswith("--args ") and first.endswith(" --unshare-net")
    assert "s3cr3t" not in first
    assert second.strip() == "--clearenv --setenv TOKEN s3cr3t"


def test_a_seccomp_filter_goes_on_a_pipe_of_its_own(tmp_path: Path) -> None:
    # A Python script stands in for bwrap: it reads the argument pipe, then the filter's.
    fake = tmp_path / "fake-bwrap"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        "args = os.read(int(sys.argv[2]), 65536).split(b'\\0')[:-1]\n"
        "fd = int(args[args.index(b'--seccomp') + 1])\n"
        "print(args[0].decode(), os.read(fd, 100).hex())\n"
    )
    fake.chmod(0o755)
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(LAUNCH_SCRIPT), "--seccomp", "0a0b", str(fake)],
        env={},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert result.stdout.split() == ["--clearenv", "0a0b"]
