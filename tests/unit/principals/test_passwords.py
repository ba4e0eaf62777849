"""Console passwords: argon2id hashes, bounds, and a failure path that runs argon2 too."""

from __future__ import annotations

import pytest

from ztgate.errors import InvalidInputError
from ztgate.principals import passwords
from ztgate.principals.passwords import check_new_password, hash_password, verify_password


def test_a_hash_is_argon2id_and_verifies_only_its_password() -> None:
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "correct horse batterY")
    assert not verify_password(hashed, "")


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short", "at least 12"),
        ("x" * 1025, "at most 1024"),
        ("twelve chars\n", "control characters"),
    ],
)
def test_unacceptable_passwords_are_refused(password: str, why: str) -> None:
    with pytest.raises(InvalidInputError, match=why):
        check_new_password(password)
    with pytest.raises(InvalidInputError):
        hash_password(password)


def test_no_stored_hash_still_runs_a_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    real = passwords._verify

    def spy(stored: str, password: str) -> bool:
        checked.append(stored)
        return real(stored, password)

    monkeypatch.setattr(passwords, "_verify", spy)
    assert not verify_password(None, "anything at all")
    assert checked and checked[0].startswith("$argon2id$")


def test_garbage_hashes_and_huge_inputs_fail_closed() -> None:
    assert not verify_password("not-a-hash", "correct horse battery")
    hashed = hash_password("correct horse battery")
    assert not verify_password(hashed, "x" * 5000)
