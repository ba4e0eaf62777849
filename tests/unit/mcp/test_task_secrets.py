"""The secrets command of a per-task MCP server, with real small commands."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from ztgate.errors import UpstreamError
from ztgate.mcp.task_instances import TaskBinding
from ztgate.mcp.task_secrets import task_secrets

ALICE = TaskBinding("spiffe://ztgate.local/agents/alice", "task-a")


def _command(script: str) -> tuple[str, ...]:
    return (sys.executable, "-c", script)


async def _secrets(script: str, **kwargs: Any) -> dict[str, str]:
    return await task_secrets(
        _command(script), server="files", agent=ALICE.agent, task_id=ALICE.task_id, **kwargs
    )


async def test_the_secrets_command_is_told_the_task_and_its_object_is_the_secrets() -> None:
    script = (
        "import json, os; print(json.dumps({'TOKEN': 'minted-for-' + os.environ['ZTGATE_TASK_ID'],"
        " 'SEEN': ' '.join(sorted(k for k in os.environ if k.startswith('ZTGATE_')))}))"
    )
    found = await _secrets(script)
    assert found == {
        "TOKEN": "minted-for-task-a",
        "SEEN": "ZTGATE_AGENT ZTGATE_SERVER ZTGATE_TASK_ID",
    }


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ("import sys; sys.exit(3)", "failed \\(exit status 3\\)"),
        ("print('not json')", "no JSON object"),
        ("print('[1, 2]')", "no JSON object"),
        ('print(\'{"PATH": "/evil"}\')', "cannot be a secret: 'PATH'"),
        ('print(\'{"http_proxy": "x"}\')', "cannot be a secret"),
        ('print(\'{"1BAD": "x"}\')', "cannot be a secret"),
        ("print('{\"TOKEN\": 5}')", "the value of TOKEN is not a string"),
        ("print('{\"TOKEN\": \"' + 'x' * 9000 + '\"}')", "the value of TOKEN"),
        ("print('x' * 70000)", "printed more than 65536 bytes"),
    ],
)
async def test_anything_but_a_clean_object_fails_closed(script: str, why: str) -> None:
    with pytest.raises(UpstreamError, match=why) as caught:
        await _secrets(script)
    assert "/evil" not in str(caught.value)  # values are never in the error


async def test_a_secrets_command_that_hangs_times_out() -> None:
    with pytest.raises(UpstreamError, match=r"did not answer within 0\.5s"):
        await _secrets("import time; time.sleep(30)", timeout=0.5)


async def test_a_secrets_command_that_cannot_run_fails_closed() -> None:
    with pytest.raises(UpstreamError, match="cannot be run"):
        await task_secrets(
            ("/nonexistent/mint",), server="files", agent=ALICE.agent, task_id=ALICE.task_id
        )
