"""The enclave's seccomp filter: a well-formed classic BPF deny-list, x86_64 only."""

from __future__ import annotations

import struct

import pytest

from ztgate.enclave import seccomp


def _ops(program: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack("<HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]


def test_the_program_checks_the_architecture_then_refuses_each_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(seccomp.platform, "machine", lambda: "x86_64")
    program = seccomp.filter_program()
    assert program is not None and len(program) % 8 == 0
    ops = _ops(program)
    assert ops[0] == (0x20, 0, 0, 4)  # load the architecture
    assert ops[1][3] == seccomp.AUDIT_ARCH_X86_64 and ops[2] == (0x06, 0, 0, 0x80000000)
    compared = {k for code, _, _, k in ops if code == 0x15}
    assert set(seccomp.REFUSED_X86_64.values()) | {seccomp.CLONE} <= compared
    assert ops[-1] == (0x06, 0, 0, 0x7FFF0000)  # everything else is allowed
    assert len(ops) < 4096  # BPF_MAXINSNS
    for code, jt, jf, _ in ops:  # every jump lands inside the program
        if code & 0x07 == 0x05:
            assert jt < len(ops) and jf < len(ops)


def test_no_filter_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp.platform, "machine", lambda: "aarch64")
    assert seccomp.filter_program() is None
