"""Enclave specs: names, environment variable names and paths checked; secrets kept out of repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from ztgate.enclave.spec import EnclaveLimits, EnclaveSpec, WrappedCommand


def test_a_spec_with_defaults() -> None:
    spec = EnclaveSpec(name="files", command="/usr/bin/python3")
    assert spec.sandbox and spec.allowed_domains == () and spec.limits == EnclaveLimits()


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "-bad"},
        {"name": "a/b"},
        {"name": ""},
        {"env": {"1BAD": "x"}},
        {"secrets": {"A-B": "x"}},
        {"read_only_paths": (Path("relative"),)},
        {"read_write_paths": (Path("relative"),)},
        {"cwd": Path("relative")},
    ],
)
def test_bad_specs(changes: dict[str, object]) -> None:
    fields: dict[str, object] = {"name": "files", "command": "python3", **changes}
    with pytest.raises(ValueError):
        EnclaveSpec(**fields)  # type: ignore[arg-type]


def test_secrets_are_not_in_the_repr() -> None:
    spec = EnclaveSpec(name="files", command="python3", secrets={"TOKEN": "s3cr3t"})
    assert "s3cr3t" not in repr(spec)
    assert "s3cr3t" not in repr(WrappedCommand("bwrap", (), {"TOKEN": "s3cr3t"}))


def test_limits_as_rlimits() -> None:
    limits = EnclaveLimits(memory_bytes=10, processes=None, cpu_seconds=5, file_size_bytes=7)
    assert limits.as_rlimits() == {"as": 10, "cpu": 5, "fsize": 7, "nofile": 1024}
