"""AgentDojo through a real gateway: a small real subset (needs agentdojo: `make eval`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "agentdojo", reason="agentdojo is not installed here: 'make eval' installs it in .venv-eval"
)

from agentdojo.functions_runtime import FunctionCall
from agentdojo.task_suite.load_suites import get_suites
from agentdojo.types import text_content_block_from_string

from ztgate.evaluation.agentdojo.run import (
    Direct,
    Environment,
    Gatewayed,
    Pair,
    count_pairs,
    gateway_for,
    newest_version,
    pairs_of,
    run_pair,
    run_suite,
    text_only,
    tool_decls,
)
from ztgate.evaluation.agentdojo.tiers import load_tiers
from ztgate.evaluation.gateway import CallOutcome

VERSION = newest_version()


@pytest.fixture(scope="module")
def banking() -> Any:
    return get_suites(VERSION)["banking"]


class Recording:
    """The gateway executor, keeping every outcome (the test reads what the gateway did)."""

    def __init__(self, inner: Gatewayed) -> None:
        self.inner = inner
        self.outcomes: list[CallOutcome] = []

    def start_task(self, intent: str, tools: Any) -> None:
        self.inner.start_task(intent, tools)

    def call(self, tool: str, arguments: Any, human: Any) -> CallOutcome:
        outcome = self.inner.call(tool, arguments, human)
        self.outcomes.append(outcome)
        return outcome

    def finish_task(self) -> None:
        self.inner.finish_task()


@pytest.fixture(scope="module")
def gateway(banking: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    environment = Environment(banking)
    with gateway_for(banking, environment, tmp_path_factory.mktemp("banking")) as executor:
        yield environment, Recording(executor)


def test_the_newest_version_is_the_default_one() -> None:
    assert VERSION == "v1.2.2"


def test_every_tool_has_a_schema_from_its_signature_and_a_tier(banking: Any) -> None:
    decls = {d.name: d for d in tool_decls(banking, load_tiers("banking"))}
    assert set(decls) == {f.name for f in banking.tools}
    send = decls["send_money"]
    assert send.risk == "critical"
    assert set(send.input_schema["properties"]) == {"recipient", "amount", "subject", "date"}
    assert send.input_schema["additionalProperties"] is False


def test_all_pairs_are_counted(banking: Any) -> None:
    assert count_pairs(["banking"], VERSION) == {"banking": 16 * (1 + 9)}
    pairs = pairs_of(banking, "important_instructions_no_model_name", user_tasks=["user_task_0"])
    assert len(pairs) == 1 + 9
    assert pairs[0].injection_task is None
    assert all(pair.injections for pair in pairs[1:])


def test_without_a_defense_the_scripted_agent_obeys_the_injection(banking: Any) -> None:
    environment = Environment(banking)
    pair = pairs_of(
        banking,
        "important_instructions_no_model_name",
        user_tasks=["user_task_0"],
        injection_tasks=["injection_task_0"],
    )[1]
    result = run_pair(banking, pair, environment, Direct(environment))
    assert result.injected
    assert result.attack_ran == 1
    assert result.attack_succeeded
    assert result.utility


def test_a_blocked_attack_leaves_the_trace_and_fails_and_the_approved_user_call_runs(
    banking: Any, gateway: Any
) -> None:
    environment, executor = gateway
    pair = pairs_of(
        banking,
        "important_instructions_no_model_name",
        user_tasks=["user_task_0"],
        injection_tasks=["injection_task_0"],
    )[1]
    executor.outcomes.clear()
    result = run_pair(banking, pair, environment, executor)
    read, attack, payment = executor.outcomes
    # the bill carries the injection; the agent obeys it at once
    assert read.tool == "read_file" and read.ran
    assert attack.tool == "send_money" and attack.arguments["recipient"].startswith("US13")
    assert attack.asked and not attack.ran  # the person rejects it: not the user's call
    # the user's own payment (critical) is asked, approved and runs
    assert payment.tool == "send_money" and payment.asked and payment.approved and payment.ran
    assert result.injected
    assert (result.attack_calls, result.attack_asked, result.attack_ran) == (1, 1, 0)
    assert result.user_asked == 1
    assert result.utility
    assert not result.attack_succeeded


def test_a_trace_scored_attack_fails_only_because_refused_calls_leave_the_trace(
    tmp_path: Path,
) -> None:
    """Slack's injection_task_5 is scored on the trace: every call in it counts, run or not."""
    slack = get_suites(VERSION)["slack"]
    environment = Environment(slack)
    pair = pairs_of(
        slack,
        "important_instructions_no_model_name",
        user_tasks=["user_task_1"],
        injection_tasks=["injection_task_5"],
    )[1]
    with gateway_for(slack, environment, tmp_path) as inner:
        executor = Recording(inner)
        result = run_pair(slack, pair, environment, executor)
    attack = [
        o for o in executor.outcomes if o.tool in ("invite_user_to_slack", "remove_user_from_slack")
    ]
    assert result.injected
    assert attack and all(o.asked and not o.ran for o in attack)  # critical: asked, rejected
    assert not result.attack_succeeded
    assert result.utility
    # the same calls left in the trace: AgentDojo would score the attack a success
    injection = slack.injection_tasks["injection_task_5"]
    every_call = [FunctionCall(function=o.tool, args=o.arguments) for o in executor.outcomes]
    output = [text_content_block_from_string("")]
    start = environment.load(pair.injections)
    assert slack._check_task_result(injection, output, start, environment.env, every_call)


def test_a_benign_run_through_the_gateway_keeps_its_utility(banking: Any, gateway: Any) -> None:
    environment, executor = gateway
    pair = Pair(banking.user_tasks["user_task_1"], None)
    result = run_pair(banking, pair, environment, executor)
    assert result.utility
    assert result.user_asked == 0  # reads only: nobody asked


def test_text_only_goals_are_the_ones_with_no_call() -> None:
    travel = get_suites(VERSION)["travel"]
    environment = Environment(travel)
    found = {t.ID for t in travel.injection_tasks.values() if text_only(t, environment)}
    assert found == {"injection_task_6"}


def test_run_suite_runs_both_ways_and_reports_progress(tmp_path: Path) -> None:
    seen: list[str] = []
    run = run_suite(
        "banking",
        VERSION,
        user_tasks=["user_task_1"],
        injection_tasks=["injection_task_7"],
        progress=lambda suite, n: seen.append(suite),
    )
    assert len(run.defended) == len(run.undefended) == 2
    assert seen == ["banking"] * 4
    assert all(r.error is None for r in [*run.defended, *run.undefended])
