"""`ztgate mcp connect`: its options, and its refusals before anything starts."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import Result

from ztgate.errors import InvalidInputError


def test_connect_needs_a_task(ztgate: Callable[..., Result]) -> None:
    done = ztgate("mcp", "connect")
    assert done.exit_code != 0
    assert "--task" in done.output


def test_a_negative_approval_timeout_is_refused(ztgate: Callable[..., Result]) -> None:
    done = ztgate("mcp", "connect", "--task", "01t", "--approval-timeout", "-1")
    assert isinstance(done.exception, InvalidInputError)
    assert "--approval-timeout must not be negative" in done.exception.message


def test_without_a_workload_api_it_is_one_line_and_exit_1(
    ztgate: Callable[..., Result], capfd: pytest.CaptureFixture[str]
) -> None:
    done = ztgate("mcp", "connect", "--task", "01t", "--socket", "/nonexistent/agent.sock")
    assert done.exit_code == 1
    err = capfd.readouterr().err + done.output
    lines = [line for line in err.splitlines() if line.startswith("ztgate: ")]
    assert len(lines) == 1 and "IdentityError" in lines[0] and "agent.sock" in lines[0], err
