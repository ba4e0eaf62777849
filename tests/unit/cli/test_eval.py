"""`ztgate eval agentdojo`: without agentdojo, one line saying how to install it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ztgate.evaluation.agentdojo import INSTALL_HINT, agentdojo_available


@pytest.mark.skipif(agentdojo_available(), reason="agentdojo is installed in this Python")
def test_without_agentdojo_it_says_how_to_install_it_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ztgate", "eval", "agentdojo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == INSTALL_HINT + "\n"
    assert "make eval" in done.stderr
    assert done.stdout == ""


def test_an_unknown_suite_is_refused() -> None:
    if not agentdojo_available():
        pytest.skip("agentdojo is not installed here: 'make eval' installs it in .venv-eval")
    done = subprocess.run(
        [sys.executable, "-m", "ztgate", "eval", "agentdojo", "--suite", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown suite 'nope'" in done.stderr


def test_eval_is_a_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ztgate", "eval", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert "agentdojo" in done.stdout
