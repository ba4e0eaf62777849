"""A real gateway for an evaluation: `ztgate serve`, its tools, an agent and a principal.

`EvalGateway` initialises a scratch directory as `ztgate init` does (the
default policies, keys, trust domain), declares the evaluation's tools in
its `ztgate.toml` (`[[tools]]`: name, JSON Schema, risk tier, the tool
server's URL), starts `python -m ztgate serve` there (the whole default
pipeline: identity, warrant, proof, schema, containment, guards, Cedar
policy, approvals, result scanning, audit) and registers this process as
its agent, attested through the SPIFFE Workload API like any agent.

`EvalSession.call` makes one call through the SDK (`ztgate.sdk.Agent`: an
SVID, the task's bound warrant, a fresh proof per call). An asked call
(202) goes to a `Human`; the decision is posted to the gateway's approvals
API by the task's principal, and an approved call is re-sent with the
approval, as the SDK does for any agent. The outcome says whether the tool
ran, was asked about, approved, or refused outright.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ztgate.cli.init import initialise
from ztgate.cli.toml import array_of_tables
from ztgate.config import Settings
from ztgate.demo.scenario import register
from ztgate.ports import free_port
from ztgate.processes import stop_process
from ztgate.sdk import Agent, ApprovalPending, CallDenied, Principal, ZtgateError

AGENT_PATH = "agent/eval"
# The gateway suspends an agent making more than 50 calls in a second (the
# default `[limits] burst_calls_per_second`); the harness keeps under it.
CALLS_PER_SECOND = 40.0
# What the agent says for every call, attacked or not: a hijacked agent
# claims to serve the user too (and never quotes the injected text).
JUSTIFICATION = "a step of the task the user gave me"


@dataclass(frozen=True, slots=True)
class ToolDecl:
    """One tool as the gateway registers it."""

    name: str
    risk: str
    description: str
    input_schema: Mapping[str, Any]


@dataclass(slots=True)
class CallOutcome:
    """What became of one call through the gateway."""

    tool: str
    arguments: dict[str, Any]
    ran: bool = False
    asked: bool = False
    approved: bool = False
    denied: bool = False
    result: Any = None
    reasons: list[str] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        """The tool did not run: refused outright, or asked and rejected."""
        return not self.ran


# A person's decision on an asked call: (tool, arguments, reasons) -> approve?
Human = Callable[[str, Mapping[str, Any], Sequence[str]], bool]


def tools_toml(tools: Sequence[ToolDecl], upstream_url: str) -> str:
    """`[[tools]]` blocks declaring `tools`, each at `<upstream_url>/<name>`."""
    entries = [
        {
            "name": tool.name,
            "url": f"{upstream_url}/{tool.name}",
            "risk": tool.risk,
            "description": tool.description,
            "input_schema": dict(tool.input_schema),
        }
        for tool in tools
    ]
    return array_of_tables("tools", entries)


class EvalGateway:
    """`ztgate serve` in `workdir` with `tools` served at `upstream_url`; this process its agent."""

    def __init__(
        self,
        workdir: Path,
        tools: Sequence[ToolDecl],
        upstream_url: str,
        *,
        policies: Sequence[Path] = (),
    ) -> None:
        """Prepare (nothing starts before `__enter__`).

        `policies`: .cedar files added to the default set in the gateway's policy directory.
        """
        self.workdir = workdir
        self.policies = list(policies)
        self.tools = list(tools)
        self.upstream_url = upstream_url
        self.url = ""
        self.settings: Settings | None = None
        self.api_key = ""
        self.agent_id = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log = workdir / "gateway.log"

    def __enter__(self) -> EvalGateway:
        config = self.workdir / "ztgate.toml"
        initialise(config, demo=False, force=False)
        with config.open("a", encoding="utf-8") as out:
            out.write("\n" + tools_toml(self.tools, self.upstream_url) + "\n")
        settings, _ = initialise(config, demo=False, force=False)
        self.settings = settings
        policy_dir = settings.path(settings.policy.dir)
        for policy in self.policies:
            (policy_dir / policy.name).write_text(policy.read_text(encoding="utf-8"))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZTGATE_")}
        env["ZTGATE_GATEWAY__PORT"] = str(port)
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "ztgate", "--config", str(config), "serve"],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{port}"
        try:
            self._wait_ready()
            self.agent_id = f"spiffe://{settings.identity.trust_domain}/{AGENT_PATH}"
            self.api_key = register(settings, [self.agent_id])
        except BaseException:
            self._stop()
            raise
        return self

    def _wait_ready(self) -> None:
        process = self._process
        if process is None:
            raise RuntimeError("the gateway was not started")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    "the gateway exited: " + self._log.read_text(errors="replace")[-1500:]
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("the gateway did not become ready within 60 s")

    def _stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, timeout=15)

    def __exit__(self, *_exc: Any) -> None:
        self._stop()

    @contextlib.contextmanager
    def session(self) -> Iterator[EvalSession]:
        """The agent (SVID from the Workload API) and the principal, connected."""
        settings = self.settings
        if settings is None:
            raise RuntimeError("the gateway is not running")
        socket_path = str(settings.path(settings.identity.workload_socket).resolve())
        with (
            Agent.connect(self.url, socket_path=socket_path, spiffe_id=self.agent_id) as agent,
            Principal(self.url, self.api_key) as principal,
            httpx.Client(
                base_url=self.url,
                timeout=30,
                headers={"Authorization": f"Bearer {self.api_key}"},
            ) as approver,
        ):
            yield EvalSession(self.agent_id, agent, principal, approver)


class EvalSession:
    """One agent's calls, within tasks a principal creates, with a person deciding asks."""

    def __init__(
        self, agent_id: str, agent: Agent, principal: Principal, approver: httpx.Client
    ) -> None:
        """Use connected clients (see `EvalGateway.session`)."""
        self.agent_id = agent_id
        self.agent = agent
        self.principal = principal
        self._approver = approver
        self._task: str | None = None
        self._last = 0.0

    def start_task(self, intent: str, tools: Sequence[str]) -> str:
        """A new task for the agent (its intent, the tools it may call), bound."""
        created = self.principal.create_task(
            agent=self.agent_id,
            intent=intent,
            scope={"tools": {name: {} for name in tools}},
            expires_in_seconds=3600,
        )
        self.agent.bind(task_id=created.task_id)
        self._task = created.task_id
        return created.task_id

    def finish_task(self) -> None:
        """Mark the current task done (its warrant stops working)."""
        if self._task is not None:
            with contextlib.suppress(ZtgateError):
                self.principal.complete_task(self._task)
            self._task = None

    def _pace(self) -> None:
        wait = self._last + 1.0 / CALLS_PER_SECOND - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last = time.monotonic()

    def call(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        human: Human,
        justification: str = JUSTIFICATION,
    ) -> CallOutcome:
        """Call `tool` through the gateway; an ask goes to `human`."""
        outcome = CallOutcome(tool, dict(arguments))
        self._pace()
        try:
            done = self.agent.call(tool, arguments, justification=justification)
        except ApprovalPending as pending:
            outcome.asked = True
            outcome.reasons = [f"{r.check}: {r.reason}" for r in pending.reasons]
            if pending.approval_id is None:
                outcome.result = {"error": pending.message}
                return outcome
            approve = human(tool, arguments, outcome.reasons)
            verb = "approve" if approve else "reject"
            answer = self._approver.post(
                f"/v1/approvals/{pending.approval_id}/{verb}", json={"comment": "evaluation"}
            )
            answer.raise_for_status()
            if not approve:
                outcome.result = {"error": "a person rejected this call"}
                return outcome
            self._pace()
            try:
                done = self.agent.wait_for_approval(pending, 30)
            except CallDenied as exc:
                outcome.reasons += [f"{r.check}: {r.reason}" for r in exc.reasons]
                outcome.result = {"error": exc.message}
                return outcome
            outcome.approved = True
        except CallDenied as exc:
            outcome.denied = True
            outcome.reasons = [f"{r.check}: {r.reason}" for r in exc.reasons] or [exc.message]
            outcome.result = {"error": exc.message}
            return outcome
        outcome.ran = True
        outcome.result = done.result
        return outcome
