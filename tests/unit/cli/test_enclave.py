"""`ztgate enclave check`: a throw-away enclave, and what it could see and do."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from ztgate.cli.enclave import verdicts
from ztgate.enclave.spec import SandboxUnavailableError

SAFE = {
    "uid": 65534,
    "no_new_privileges": True,
    "capabilities": "0000000000000000",
    "seccomp": True,
    "network_isolated": True,
    "root_read_only": True,
    "environment": ["HOME", "PATH"],
}


def test_verdicts() -> None:
    assert all(ok for ok, _ in verdicts(SAFE, as_root=True, uid=65534))
    unsafe = {**SAFE, "uid": 0, "capabilities": "000001ffffffffff", "environment": ["USER"]}
    failed = [what for ok, what in verdicts(unsafe, as_root=True, uid=65534) if not ok]
    assert failed == ["no capabilities", "runs as uid 0", "scrubbed environment"]
    unfiltered = {**SAFE, "seccomp": False}
    assert not verdicts(unfiltered, as_root=True, uid=65534)[0][0]
    assert verdicts(unfiltered, as_root=True, uid=65534, seccomp=False)[0][0]
    assert not all(ok for ok, _ in verdicts({}, as_root=False, uid=1))


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_check_here(ztgate: Callable[..., Result]) -> None:
    result = ztgate("enclave", "check", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["ok"] is True and shown["enclave"]["network_isolated"] is True
    table = ztgate("enclave", "check")
    assert "✓ no network but its own loopback" in table.stdout


def test_no_bwrap_is_an_error(cli: Callable[..., Result], tmp_path: Path) -> None:
    config = tmp_path / "ztgate.toml"
    config.write_text("[enclaves]\nbwrap = 'ztgate-no-such-bwrap'\n", encoding="utf-8")
    result = cli("--config", str(config), "enclave", "check")
    assert isinstance(result.exception, SandboxUnavailableError)
