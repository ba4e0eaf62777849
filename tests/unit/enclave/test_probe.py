"""The sandbox probe: bwrap missing or failing means no enclave."""

from __future__ import annotations

import shutil

import pytest

from ztgate.enclave.probe import check_sandbox, running_as_root
from ztgate.enclave.sandbox import SandboxOptions
from ztgate.enclave.spec import SandboxUnavailableError


async def test_missing_bwrap() -> None:
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap"):
        await check_sandbox(SandboxOptions(bwrap="ztgate-no-such-bwrap"))


async def test_a_bwrap_that_fails(tmp_path: object) -> None:
    # `false` stands in for a bwrap the kernel will not let create namespaces.
    with pytest.raises(SandboxUnavailableError, match="cannot create a sandbox"):
        await check_sandbox(SandboxOptions(bwrap="false"))


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_the_real_bwrap_passes_here() -> None:
    await check_sandbox(SandboxOptions())


def test_root_is_the_effective_uid() -> None:
    import os

    assert running_as_root() == (os.geteuid() == 0)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_inspecting_a_throw_away_enclave() -> None:
    from ztgate.enclave.probe import inspect_sandbox

    found = await inspect_sandbox(SandboxOptions())
    assert found["network_isolated"] is True and found["root_read_only"] is True
    assert found["no_new_privileges"] is True and found["capabilities"] == "0000000000000000"
    assert "home" not in found["top_level"]  # type: ignore[operator]
