"""Stopping child processes, and the environment they get."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ztgate.processes import child_env, stop_process


def test_a_process_that_ignores_sigterm_is_killed_and_reaped() -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(60)"
    )
    process = subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline()  # the handler is set
    stop_process(process, timeout=0.5)
    assert process.returncode == -9
    process.stdout.close()


def test_a_process_stopped_by_sigterm_and_one_already_gone() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stop_process(process)
    assert process.returncode == -15
    stop_process(process)  # again: nothing to do
    assert process.returncode == -15


def test_the_child_environment_drops_ztgate_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZTGATE_CONFIG", "/elsewhere.toml")
    env = child_env(EXTRA="1")
    assert "ZTGATE_CONFIG" not in env and env["EXTRA"] == "1" and env["PYTHONUNBUFFERED"] == "1"
