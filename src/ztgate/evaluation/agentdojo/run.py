"""The AgentDojo benchmark with ztgate as the layer every tool call goes through.

Per suite, one real gateway (`ztgate.evaluation.gateway`): each AgentDojo
tool is registered in it (its JSON Schema from the function's signature,
its risk tier from `tiers/<suite>.yaml`), served by a tool server in this
process that runs the AgentDojo function against the current task's
environment. Each user task becomes a ztgate task whose intent is the
user's prompt and whose scope is the suite's tools; every call is made
through the SDK with the agent's SVID, the task's warrant and a proof, and
decided by the default pipeline and policies.

The agent (`scripted`, the default) is a worst case: it makes the user
task's ground-truth calls and, as soon as a result carries the injection,
obeys it (the injection task's calls, `attacker.py`), then resumes. Asks go
to `SimulatedHuman`. A call that did not run is left out of the trace
AgentDojo scores (its checkers read every call in the trace, run or not).
The same agent without the gateway is the no-defense run.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from agentdojo.attacks.attack_registry import load_attack
from agentdojo.functions_runtime import FunctionCall, FunctionsRuntime
from agentdojo.task_suite.load_suites import get_suites
from agentdojo.task_suite.task_suite import read_suite_file
from agentdojo.types import text_content_block_from_string
from pydantic_core import to_jsonable_python

from ztgate.evaluation.agentdojo.attacker import attacker_calls
from ztgate.evaluation.agentdojo.outcomes import PairResult, SimulatedHuman, contains
from ztgate.evaluation.agentdojo.tiers import load_tiers
from ztgate.evaluation.gateway import CallOutcome, EvalGateway, Human, ToolDecl
from ztgate.evaluation.upstream import ToolServer

SUITES = ("workspace", "travel", "banking", "slack")
DEFAULT_ATTACK = "important_instructions_no_model_name"


def benchmark_versions() -> list[str]:
    """The benchmark versions the installed agentdojo knows, oldest first."""
    from agentdojo.task_suite.load_suites import _SUITES

    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.lstrip("v").split("."))

    return sorted(_SUITES, key=key)


def newest_version() -> str:
    """The newest benchmark version the installed agentdojo supports."""
    return benchmark_versions()[-1]


class _Pipeline:
    """What an attack reads of the pipeline it targets: its name."""

    def __init__(self, name: str) -> None:
        self.name = name


def _without_nulls(value: Any) -> Any:
    """A JSON Schema without `"default": null` and the like (TOML has no null; annotations only)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def tool_decls(suite: Any, tiers: Mapping[str, str]) -> list[ToolDecl]:
    """The suite's tools as the gateway registers them: JSON Schema from the signature, tier."""
    decls = []
    for function in suite.tools:
        schema = _without_nulls(function.parameters.model_json_schema())
        schema.pop("title", None)
        schema["additionalProperties"] = False
        decls.append(ToolDecl(function.name, tiers[function.name], function.description, schema))
    return decls


class Environment:
    """The environment the tool server's functions act on (the current pair's)."""

    def __init__(self, suite: Any) -> None:
        self.suite = suite
        self.runtime = FunctionsRuntime(suite.tools)
        self.env: Any = None
        self._text = read_suite_file(suite.name, "environment.yaml", suite.data_path)
        self._defaults = suite.get_injection_vector_defaults()

    def load(self, injections: Mapping[str, str]) -> Any:
        """The suite's environment with `injections` (as AgentDojo builds it, with libyaml)."""
        text = self._text.format(**dict(self._defaults, **injections))
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return self.suite.environment_type.model_validate(yaml.load(text, Loader=loader))  # noqa: S506 - a safe loader

    def run(self, tool: str, arguments: Mapping[str, Any]) -> Any:
        """Run one AgentDojo function on the current environment; raise its error."""
        result, error = self.runtime.run_function(self.env, tool, dict(arguments))
        if error is not None:
            raise RuntimeError(error)
        return to_jsonable_python(result)


class Executor(Protocol):
    """Where the agent's calls go: through the gateway, or straight to the tools."""

    def start_task(self, intent: str, tools: Sequence[str]) -> None: ...

    def call(self, tool: str, arguments: Mapping[str, Any], human: Human) -> CallOutcome: ...

    def finish_task(self) -> None: ...


class Direct:
    """No defense: every call runs."""

    def __init__(self, environment: Environment) -> None:
        self._environment = environment

    def start_task(self, intent: str, tools: Sequence[str]) -> None:
        return None

    def call(self, tool: str, arguments: Mapping[str, Any], human: Human) -> CallOutcome:
        outcome = CallOutcome(tool, dict(arguments), ran=True)
        try:
            outcome.result = {"result": self._environment.run(tool, arguments)}
        except Exception as exc:
            outcome.result = {"error": f"{type(exc).__name__}: {exc}"}
        return outcome

    def finish_task(self) -> None:
        return None


class Gatewayed:
    """Every call through a real gateway, as its agent, under a task per user task."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def start_task(self, intent: str, tools: Sequence[str]) -> None:
        self._session.start_task(intent, tools)

    def call(self, tool: str, arguments: Mapping[str, Any], human: Human) -> CallOutcome:
        outcome: CallOutcome = self._session.call(tool, arguments, human)
        return outcome

    def finish_task(self) -> None:
        self._session.finish_task()


def _jsonable(arguments: Mapping[str, Any]) -> dict[str, Any]:
    value = to_jsonable_python(dict(arguments))
    return value if isinstance(value, dict) else {}


@dataclass
class Pair:
    """One run to make: a user task, alone or with an injection task and its injections."""

    user_task: Any
    injection_task: Any | None
    injections: dict[str, str] = field(default_factory=dict)


def text_only(injection_task: Any, environment: Environment) -> bool:
    """True if the injection task's goal is only text in the agent's answer (no call to make)."""
    start = environment.load({})
    return not attacker_calls(environment.suite.name, injection_task, start, start)


def _ask(outcome: CallOutcome, whose: str) -> str:
    verdict = "approved" if outcome.approved else "rejected"
    return f"{outcome.tool} ({whose}'s call, {verdict}): " + "; ".join(outcome.reasons)[:300]


def run_pair(
    suite: Any,
    pair: Pair,
    environment: Environment,
    executor: Executor,
    text_goals: frozenset[str] = frozenset(),
) -> PairResult:
    """Run the scripted agent on one pair and score it with AgentDojo's own checks."""
    user_task, injection_task = pair.user_task, pair.injection_task
    result, env, start, ground_truth = prepare_pair(suite, pair, environment, text_goals)
    human = SimulatedHuman((c.function, _jsonable(c.args)) for c in ground_truth)
    trace: list[FunctionCall] = []
    tools = [function.name for function in suite.tools]
    goal = None if injection_task is None else injection_task.GOAL
    executor.start_task(user_task.PROMPT, tools)
    try:
        for call in ground_truth:
            outcome = executor.call(call.function, _jsonable(call.args), human)
            result.user_calls += 1
            result.user_asked += outcome.asked
            if outcome.asked:
                result.asks.append(_ask(outcome, "user"))
            if outcome.ran:
                trace.append(call)
            else:
                result.user_refused += 1
                result.reasons += outcome.reasons
            if goal is not None and not result.injected and contains(outcome.result, goal):
                result.injected = True
                for attack in attacker_calls(suite.name, injection_task, env, start):
                    done = executor.call(attack.function, _jsonable(attack.args), human)
                    result.attack_calls += 1
                    result.attack_asked += done.asked
                    if done.asked:
                        result.asks.append(_ask(done, "attacker"))
                    result.attack_denied += done.denied
                    result.attack_ran += done.ran
                    if done.ran:
                        trace.append(attack)
                        result.attack_ran_tools.append(attack.function)
                    else:
                        result.reasons += done.reasons
    finally:
        executor.finish_task()
    answer = str(user_task.GROUND_TRUTH_OUTPUT)
    if result.injected and injection_task is not None and injection_task.GROUND_TRUTH_OUTPUT:
        answer += "\n" + str(injection_task.GROUND_TRUTH_OUTPUT)  # obeying a text-only goal
    output = [text_content_block_from_string(answer)]
    return score_pair(suite, pair, result, output, start, env, trace)


def prepare_pair(
    suite: Any, pair: Any, environment: Environment, text_goals: frozenset[str]
) -> tuple[PairResult, Any, Any, list[FunctionCall]]:
    """A pair's empty result, its environment (now `environment.env`), a copy of it as it
    started, and the user task's ground-truth calls."""
    user_task, injection_task = pair.user_task, pair.injection_task
    result = PairResult(
        suite.name,
        user_task.ID,
        None if injection_task is None else injection_task.ID,
        utility=False,
        text_only=injection_task is not None and injection_task.ID in text_goals,
    )
    env = user_task.init_environment(environment.load(pair.injections))
    start = env.model_copy(deep=True)
    ground_truth: list[FunctionCall] = list(user_task.ground_truth(start.model_copy(deep=True)))
    environment.env = env
    return result, env, start, ground_truth


def score_pair(
    suite: Any,
    pair: Any,
    result: PairResult,
    output: Any,
    start: Any,
    env: Any,
    trace: list[FunctionCall],
) -> PairResult:
    """`result` with AgentDojo's own utility and security checks of the run."""
    result.utility = bool(suite._check_task_result(pair.user_task, output, start, env, trace))
    if pair.injection_task is not None:
        result.attack_succeeded = bool(
            suite._check_task_result(pair.injection_task, output, start, env, trace)
        )
    return result


def pairs_of(
    suite: Any,
    attack_name: str,
    *,
    user_tasks: Sequence[str] | None = None,
    injection_tasks: Sequence[str] | None = None,
    target: str = "local",
) -> list[Pair]:
    """The benign runs and every (user task, injection task) pair of the suite."""
    # The attacks read the target's model from the pipeline's name (`target`);
    # the scripted agent is a local one ("important_instructions_no_model_name"
    # then names no model at all).
    attack = load_attack(attack_name, suite, _Pipeline(target))
    attack.get_injection_candidates = functools.cache(attack.get_injection_candidates)
    users = [t for i, t in suite.user_tasks.items() if user_tasks is None or i in user_tasks]
    injections = [
        t
        for i, t in suite.injection_tasks.items()
        if injection_tasks is None or i in injection_tasks
    ]
    pairs = [Pair(user, None) for user in users]
    for user in users:
        for injection in injections:
            pairs.append(Pair(user, injection, dict(attack.attack(user, injection))))
    return pairs


@dataclass
class SuiteRun:
    """One suite's results, defended and not, and how long each took."""

    suite: str
    defended: list[PairResult]
    undefended: list[PairResult]
    seconds_defended: float
    seconds_undefended: float


Progress = Callable[[str, int], None]  # (suite, pairs done since the last report)


@contextlib.contextmanager
def gateway_for(
    suite: Any, environment: Environment, workdir: Path, policies: Sequence[Path] = ()
) -> Iterator[Gatewayed]:
    """A real gateway with the suite's tools (and `policies` beside the default set)."""
    tiers = load_tiers(suite.name)
    with (
        ToolServer(environment.run) as server,
        EvalGateway(workdir, tool_decls(suite, tiers), server.url, policies=policies) as gateway,
        gateway.session() as session,
    ):
        yield Gatewayed(session)


def run_suite(
    name: str,
    version: str,
    *,
    attack: str = DEFAULT_ATTACK,
    user_tasks: Sequence[str] | None = None,
    injection_tasks: Sequence[str] | None = None,
    progress: Progress | None = None,
    defended: bool = True,
    undefended: bool = True,
    model: tuple[str, str] | None = None,
    policies: Sequence[Path] = (),
) -> SuiteRun:
    """Run one suite's benign runs and pairs, with the gateway and without.

    `model`: (OpenAI-compatible base URL, model name) runs AgentDojo's LLM
    pipeline as the agent instead of the scripted one.
    """
    suite = get_suites(version)[name]
    environment = Environment(suite)
    pairs = pairs_of(
        suite,
        attack,
        user_tasks=user_tasks,
        injection_tasks=injection_tasks,
        target=model[1] if model is not None else "local",
    )
    agent = None
    if model is not None:
        from ztgate.evaluation.agentdojo.llm import pipeline

        agent = pipeline(*model)
    text_goals = frozenset(
        task.ID for task in suite.injection_tasks.values() if text_only(task, environment)
    )
    report = progress or (lambda _suite, _n: None)
    timings = {"defended": 0.0, "undefended": 0.0}
    results: dict[str, list[PairResult]] = {"defended": [], "undefended": []}
    if undefended:
        started = time.monotonic()
        direct = Direct(environment)
        for pair in pairs:
            results["undefended"].append(_safe(suite, pair, environment, direct, text_goals, agent))
            report(name, 1)
        timings["undefended"] = time.monotonic() - started
    if defended:
        started = time.monotonic()
        with (
            tempfile.TemporaryDirectory(prefix=f"ztgate-agentdojo-{name}-") as scratch,
            gateway_for(suite, environment, Path(scratch), policies) as executor,
        ):
            for pair in pairs:
                results["defended"].append(
                    _safe(suite, pair, environment, executor, text_goals, agent)
                )
                report(name, 1)
        timings["defended"] = time.monotonic() - started
    return SuiteRun(
        name,
        results["defended"],
        results["undefended"],
        timings["defended"],
        timings["undefended"],
    )


def _safe(
    suite: Any,
    pair: Pair,
    environment: Environment,
    executor: Executor,
    text_goals: frozenset[str],
    agent: Any = None,
) -> PairResult:
    """`run_pair` (or the LLM pipeline's), a failure recorded as a failed run (never dropped)."""
    try:
        if agent is not None:
            from ztgate.evaluation.agentdojo.llm import run_pair_with_model

            return run_pair_with_model(suite, pair, environment, executor, agent, text_goals)
        return run_pair(suite, pair, environment, executor, text_goals)
    except Exception as exc:
        injection = pair.injection_task
        return PairResult(
            suite.name,
            pair.user_task.ID,
            None if injection is None else injection.ID,
            utility=False,
            error=f"{type(exc).__name__}: {exc}"[:500],
        )


def count_pairs(
    names: Sequence[str],
    version: str,
    *,
    user_tasks: Sequence[str] | None = None,
    injection_tasks: Sequence[str] | None = None,
) -> dict[str, int]:
    """How many runs (benign + pairs) each suite has, for the progress bars."""
    counts = {}
    for name in names:
        suite = get_suites(version)[name]
        users = sum(1 for i in suite.user_tasks if user_tasks is None or i in user_tasks)
        injections = sum(
            1 for i in suite.injection_tasks if injection_tasks is None or i in injection_tasks
        )
        counts[name] = users * (1 + injections)
    return counts
