"""Fixtures for the command-line tests: an in-process runner and the real executable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from ztgate.cli.main import app
from ztgate.config import Settings

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ZTGATE = Path(sys.executable).with_name("ztgate")


def flat(text: str) -> str:
    """`text` without colour codes and with Rich's line wrapping undone."""
    return " ".join(_ANSI.sub("", text).split())


@pytest.fixture
def config(settings: Settings) -> Path:
    """The config file of the initialised `settings`."""
    return settings.base_dir / "ztgate.toml"


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run `ztgate ARGS...` in this process (typer's runner; errors stay exceptions)."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args))

    return invoke


@pytest.fixture
def ztgate(cli: Callable[..., Result], config: Path) -> Callable[..., Result]:
    """Run `ztgate --config <config> ARGS...` in this process."""

    def invoke(*args: str) -> Result:
        return cli("--config", str(config), *args)

    return invoke


@pytest.fixture
def run_ztgate(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed `ztgate` executable, as a user's shell or a CI job would (no TTY)."""
    assert ZTGATE.exists(), f"{ZTGATE} is not installed"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ZTGATE_") and k not in {"COLUMNS", "LINES"}
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ZTGATE), *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
            check=False,
        )

    return run


@pytest.fixture
def flatten() -> Callable[[str], str]:
    """The `flat` helper."""
    return flat
