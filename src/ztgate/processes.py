"""Child processes ztgate starts on its own machine (cluster replicas, demo, evaluation)."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ZTGATE_* variable, plus `extra`, unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZTGATE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def stop_process(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds; reaped either way."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
