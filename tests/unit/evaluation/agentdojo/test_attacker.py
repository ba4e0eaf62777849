"""The scripted attacker: the workspace injection tasks with no ground truth at v1.2."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip(
    "agentdojo", reason="agentdojo is not installed here: 'make eval' installs it in .venv-eval"
)

from agentdojo.task_suite.load_suites import get_suites

from ztgate.evaluation.agentdojo.attacker import RECIPIENT, attacker_calls
from ztgate.evaluation.agentdojo.run import Direct, Environment, pairs_of, run_pair


@pytest.fixture(scope="module")
def workspace() -> Any:
    return get_suites("v1.2.2")["workspace"]


@pytest.mark.parametrize("number", range(6, 14))
def test_the_empty_ground_truths_are_scripted_and_succeed_without_a_defense(
    workspace: Any, number: int
) -> None:
    task = workspace.injection_tasks[f"injection_task_{number}"]
    assert task.ground_truth(workspace.load_and_inject_default_environment({})) == []
    environment = Environment(workspace)
    start = environment.load({})
    calls = attacker_calls("workspace", task, start, start)
    assert calls
    if number != 13:
        assert any(RECIPIENT in c.args.get("recipients", []) for c in calls)
    pair = pairs_of(
        workspace,
        "important_instructions_no_model_name",
        user_tasks=["user_task_0"],
        injection_tasks=[task.ID],
    )[1]
    result = run_pair(workspace, pair, environment, Direct(environment))
    assert result.injected
    assert result.attack_succeeded


def test_a_task_with_a_ground_truth_uses_it(workspace: Any) -> None:
    task = workspace.injection_tasks["injection_task_0"]
    start = workspace.load_and_inject_default_environment({})
    assert [c.function for c in attacker_calls("workspace", task, start, start)] == ["send_email"]
