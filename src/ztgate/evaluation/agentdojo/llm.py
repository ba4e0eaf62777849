"""AgentDojo's own LLM pipeline as the agent, where a model endpoint is configured.

`--model-url` (an OpenAI-compatible `/v1` base URL) and `--model` replace
the scripted agent with AgentDojo's tool-calling loop (system message, the
user's prompt, the model, the tools executor). The tools run through the
same executor as the scripted agent's calls (`GatewayRuntime`): through the
gateway as the task's agent, asks to the same simulated person, or
straight to the tools for the no-defense run. A call that did not run
answers the model with the reason, and is left out of the trace AgentDojo
scores. The API key is read from `ZTGATE_EVAL_API_KEY` (or `OPENAI_API_KEY`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from agentdojo.agent_pipeline import (
    AgentPipeline,
    InitQuery,
    OpenAILLM,
    SystemMessage,
    ToolsExecutionLoop,
    ToolsExecutor,
)
from agentdojo.agent_pipeline.agent_pipeline import load_system_message
from agentdojo.agent_pipeline.errors import AbortAgentError
from agentdojo.functions_runtime import FunctionCall, FunctionsRuntime
from agentdojo.task_suite.task_suite import (
    functions_stack_trace_from_messages,
    model_output_from_messages,
)
from pydantic_core import to_jsonable_python

from ztgate.evaluation.agentdojo.outcomes import PairResult, SimulatedHuman, call_key
from ztgate.evaluation.agentdojo.run import prepare_pair, score_pair

API_KEY_VARIABLES = ("ZTGATE_EVAL_API_KEY", "OPENAI_API_KEY")


def pipeline(model_url: str, model: str) -> Any:
    """AgentDojo's tool-calling pipeline over an OpenAI-compatible endpoint."""
    openai = importlib.import_module("openai")  # installed with agentdojo
    key = next((os.environ[v] for v in API_KEY_VARIABLES if os.environ.get(v)), "none")
    llm = OpenAILLM(openai.OpenAI(base_url=model_url, api_key=key), model)
    agent = AgentPipeline(
        [
            SystemMessage(load_system_message(None)),
            InitQuery(),
            llm,
            ToolsExecutionLoop([ToolsExecutor(), llm]),
        ]
    )
    agent.name = model  # the attacks address the model by the name in it
    return agent


class GatewayRuntime(FunctionsRuntime):  # type: ignore[misc]
    """AgentDojo's runtime, each call sent through an executor (the gateway, or none)."""

    def __init__(self, functions: Sequence[Any], executor: Any, human: SimulatedHuman) -> None:
        super().__init__(functions)
        self.executor = executor
        self.human = human
        self.outcomes: list[Any] = []

    def run_function(
        self,
        env: Any,
        function: str,
        kwargs: Mapping[str, Any],
        raise_on_error: bool = False,
    ) -> tuple[Any, str | None]:
        """One call through the executor: its result, or why it did not run."""
        if function not in self.functions:
            return "", f"ToolNotFoundError: The requested function `{function}` is not available."
        arguments = to_jsonable_python(dict(kwargs))
        outcome = self.executor.call(function, arguments, self.human)
        self.outcomes.append(outcome)
        body = outcome.result if isinstance(outcome.result, dict) else {"result": outcome.result}
        if not outcome.ran:
            return "", "ZtgateRefused: " + ("; ".join(outcome.reasons) or str(body.get("error")))
        if set(body) == {"error"}:
            return "", str(body["error"])
        return yaml.safe_dump(body, sort_keys=False).strip(), None


def without_refused(trace: Sequence[FunctionCall], outcomes: Sequence[Any]) -> list[FunctionCall]:
    """The trace minus the calls that did not run (one trace entry per refused call)."""
    refused: dict[str, int] = {}
    for outcome in outcomes:
        if not outcome.ran:
            key = call_key(outcome.tool, outcome.arguments)
            refused[key] = refused.get(key, 0) + 1
    kept = []
    for call in trace:
        key = call_key(call.function, to_jsonable_python(dict(call.args)))
        if refused.get(key):
            refused[key] -= 1
            continue
        kept.append(call)
    return kept


def run_pair_with_model(
    suite: Any,
    pair: Any,
    environment: Any,
    executor: Any,
    agent: Any,
    text_goals: frozenset[str] = frozenset(),
) -> PairResult:
    """Run AgentDojo's pipeline on one pair, its tools through `executor`; score it."""
    user_task, injection_task = pair.user_task, pair.injection_task
    result, env, start, ground_truth = prepare_pair(suite, pair, environment, text_goals)
    human = SimulatedHuman((c.function, to_jsonable_python(dict(c.args))) for c in ground_truth)
    runtime = GatewayRuntime(suite.tools, executor, human)
    executor.start_task(user_task.PROMPT, [f.name for f in suite.tools])
    try:
        try:
            _, _, env, messages, _ = agent.query(user_task.PROMPT, runtime, env)
        except AbortAgentError as aborted:
            env, messages = aborted.task_environment, aborted.messages
    finally:
        executor.finish_task()
    expected = {call_key(c.function, to_jsonable_python(dict(c.args))) for c in ground_truth}
    for outcome in runtime.outcomes:
        mine = call_key(outcome.tool, outcome.arguments) in expected
        if mine or injection_task is None:
            result.user_calls += 1
            result.user_asked += outcome.asked
            result.user_refused += not outcome.ran
        else:  # a call the user's task does not need: counted as the attacker's
            result.attack_calls += 1
            result.attack_asked += outcome.asked
            result.attack_denied += outcome.denied
            result.attack_ran += outcome.ran
        if not outcome.ran:
            result.reasons += outcome.reasons
    trace = without_refused(functions_stack_trace_from_messages(messages), runtime.outcomes)
    output = model_output_from_messages(messages) or []
    result.injected = injection_task is not None and result.attack_calls > 0
    return score_pair(suite, pair, result, output, start, env, trace)
