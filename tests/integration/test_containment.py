"""Containment against real gateway processes over HTTP: bursts, the kill switch, limits, budgets.

Two gateways, each with authentication, tasks, warrants and a fresh proof per
call, as agents use them:

- `runaway`: a burst threshold of 5 calls within 2 s and a webhook receiver
  (in this test process) for the alert. A scripted runaway agent is
  suspended at its sixth call, stays suspended across a restart, and calls
  again once a principal resumes it.
- `contained`: bursts off; a tool with its own rate limit, loop detection
  at 3 repeats. The kill switch stops a running agent within one call; kills
  of a task and of everything over the HTTP API; 429 with Retry-After; a
  call budget that survives a restart.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ztgate.canonical import canonical_json
from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.identity.authority import CertificateAuthority
from ztgate.principals.registry import PrincipalRegistry
from ztgate.tasks.registry import TaskRegistry
from ztgate.testing import make_settings
from ztgate.warrants import proof
from ztgate.warrants.jwk import key_thumbprint

from .harness import GatewayProcess, Upstream, gateway_toml, main_tools, make_client
from .test_authentication import _register

RUNAWAY = "spiffe://ztgate.local/agents/runaway"
BYSTANDER = "spiffe://ztgate.local/agents/bystander"
WORKER = "spiffe://ztgate.local/agents/worker"
THRESHOLD = 5  # calls within BURST_WINDOW (2.5 calls a second over 2 s)
BURST_WINDOW = 2.0
LOOP_REPEATS = 3


# -- a webhook receiver ----------------------------------------------------------------------------


class Receiver:
    """An HTTP server in this process that keeps the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        received = self.alerts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                received.append(
                    {
                        "content_type": self.headers.get("content-type"),
                        "body": json.loads(self.rfile.read(length)),
                    }
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def wait_for(self, found: Callable[[dict[str, Any]], bool], timeout: float = 10) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for alert in list(self.alerts):
                if found(alert["body"]):
                    return alert
            time.sleep(0.02)
        raise AssertionError(f"no such alert within {timeout} s: {self.alerts}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()


# -- agents and tasks ------------------------------------------------------------------------------


class Agent:
    """An agent's SVID key and JWT-SVID, as the Workload API would give them."""

    def __init__(self, workdir: Path, spiffe_id: str) -> None:
        self.workdir = workdir
        self.spiffe_id = spiffe_id
        ca = CertificateAuthority.load(workdir / ".ztgate" / "ca", SystemClock())
        svid = ca.issue_x509_svid(spiffe_id)
        assert svid.private_key is not None
        self.key = svid.private_key
        self.bearer = ca.issue_jwt_svid(spiffe_id, ["ztgate"], ttl=900)

    def task(self, tools: Sequence[str] = ("lookup",), budget_calls: int | None = None) -> Task:
        return Task(self, tools, budget_calls)


class Task:
    """A task of an agent, its warrant bound to the agent's key; a fresh proof per call."""

    def __init__(self, agent: Agent, tools: Sequence[str], budget_calls: int | None) -> None:
        self.agent = agent
        settings = load_settings(agent.workdir / "ztgate.toml")
        database = settings.open_database()
        try:
            registry = TaskRegistry.from_settings(settings, database, SystemClock())
            task, _, warrant = registry.create(
                principal="admin",
                agent=agent.spiffe_id,
                intent="a containment test",
                scope={"tools": {tool: {} for tool in tools}},
                budget_calls=budget_calls,
                agent_jkt=key_thumbprint(agent.key),
            )
        finally:
            database.dispose()
        assert warrant is not None
        self.id = task.id
        self.warrant = warrant

    def call(self, client: httpx.Client, tool: str, arguments: dict[str, Any]) -> httpx.Response:
        signed = proof.sign(
            self.agent.key,
            audience="ztgate",
            task_id=self.id,
            warrant=self.warrant,
            canonical=canonical_json(arguments),
            tool=tool,
            issued_at=time.time(),
        )
        headers = {
            "Authorization": f"Bearer {self.agent.bearer}",
            "Ztgate-Warrant": self.warrant,
            "Ztgate-Proof": signed,
        }
        return client.post(
            "/v1/calls", json={"tool": tool, "arguments": arguments}, headers=headers
        )


def deciding(response: httpx.Response) -> tuple[int, str | None, str]:
    """(status, the deciding check, its reason) of an answer."""
    if response.status_code == 200:
        return 200, None, ""
    reasons = response.json().get("reasons") or [{"check": None, "reason": ""}]
    return response.status_code, reasons[-1]["check"], reasons[-1]["reason"]


def audit_bodies(gateway: GatewayProcess) -> list[dict[str, Any]]:
    rows = gateway._query("SELECT body FROM audit_records ORDER BY chain, seq")
    return [json.loads(body) for (body,) in rows]


def start(
    workdir: Path, upstream: Upstream, dead_port: int, limits: str, agents: Sequence[str]
) -> GatewayProcess:
    tools = [
        *main_tools(upstream, dead_port, tag=workdir.name),
        {
            "name": "throttled",
            "url": f"{upstream.url}/echo/{workdir.name}",
            "risk": "read",
            "input_schema": {"type": "object"},
            "limits": {"rate_per_second": 0.5, "burst": 2},
        },
    ]
    toml = gateway_toml(tools, gateway={"authentication": "required"}) + "\n[limits]\n" + limits
    make_settings(workdir, toml)
    for spiffe_id in agents:
        _register(workdir, spiffe_id)
    process = GatewayProcess(workdir)
    process.start()
    return process


# -- a runaway agent -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runaway(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: Upstream,
    dead_port: int,
    receiver: Receiver,
) -> Iterator[GatewayProcess]:
    limits = (
        f"burst_calls_per_second = {THRESHOLD / BURST_WINDOW}\n"
        f"burst_window_seconds = {BURST_WINDOW}\n"
        f'alert_webhook_url = "{receiver.url}"\n'
        "alert_timeout_seconds = 2\n"
    )
    process = start(
        tmp_path_factory.mktemp("runaway"), upstream, dead_port, limits, [RUNAWAY, BYSTANDER]
    )
    try:
        yield process
    finally:
        process.stop()


def test_a_runaway_agent_is_suspended_within_the_threshold_until_resumed(
    runaway: GatewayProcess, receiver: Receiver
) -> None:
    agent = Agent(runaway.workdir, RUNAWAY)
    task = agent.task()
    answers = []
    with make_client(runaway.url) as client:
        began = time.monotonic()
        for n in range(3 * THRESHOLD):  # as fast as it can, each call a new one
            answers.append(deciding(task.call(client, "lookup", {"n": n})))
            if n == THRESHOLD:
                took = time.monotonic() - began
    assert took < BURST_WINDOW, f"too slow to be a burst here ({took:.2f} s)"
    # Suspended within the threshold: the calls up to it ran, the one beyond it did not...
    assert [a[0] for a in answers[:THRESHOLD]] == [200] * THRESHOLD
    status, check, reason = answers[THRESHOLD]
    assert (status, check) == (403, "burst")
    assert f"more than {THRESHOLD} calls within {BURST_WINDOW:g} s" in reason
    # ... and every call after it is refused by the suspension.
    for status, check, reason in answers[THRESHOLD + 1 :]:
        assert (status, check) == (403, "halt")
        assert "suspended" in reason

    # The alert: a JSON webhook POST, and a log line.
    alert = receiver.wait_for(lambda body: body.get("agent") == RUNAWAY)
    assert alert["content_type"] == "application/json"
    body = alert["body"]
    assert (body["event"], body["cause"], body["calls"]) == ("agent.suspended", "burst", 6)
    assert body["task_id"] == task.id
    assert "containment alert" in runaway.log_path.read_text()
    # The audit record, and what `ztgate kill list` shows.
    (suspended,) = [r for r in audit_bodies(runaway) if r["kind"] == "containment"]
    assert suspended["agent"] == RUNAWAY
    assert suspended["detail"]["action"] == "agent.suspend"
    listed = runaway.cli("kill", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (hold,) = json.loads(listed.stdout)
    assert (hold["scope"], hold["target"], hold["cause"]) == ("agent", RUNAWAY, "burst")

    with make_client(runaway.url) as client:
        # Other agents go on.
        assert (
            deciding(Agent(runaway.workdir, BYSTANDER).task().call(client, "lookup", {}))[0] == 200
        )
        # Waiting does not lift a suspension.
        time.sleep(BURST_WINDOW + 0.2)
        assert deciding(task.call(client, "lookup", {"n": "later"}))[:2] == (403, "halt")

    # Nor does a restart: the suspension is durable.
    runaway.stop()
    runaway.start()
    with make_client(runaway.url) as client:
        assert deciding(task.call(client, "lookup", {"n": "restarted"}))[:2] == (403, "halt")
        resumed = runaway.cli("resume", "agent", RUNAWAY, "--reason", "looked into it")
        assert resumed.returncode == 0, resumed.stderr
        assert "lifted: burst" in " ".join(resumed.stdout.split())
        # From the very next call on; and its burst window starts empty.
        for n in range(THRESHOLD):
            assert deciding(task.call(client, "lookup", {"n": f"resumed-{n}"}))[0] == 200
    actions = [r["detail"].get("action") for r in audit_bodies(runaway)]
    assert actions.count("agent.suspend") == 1
    assert "containment.resume" in actions
    runaway.verify_audit()


# -- the kill switch, limits, budgets ----------------------------------------------------------


@pytest.fixture(scope="module")
def contained(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, dead_port: int
) -> Iterator[GatewayProcess]:
    limits = f"burst_calls_per_second = 0\nloop_max_repeats = {LOOP_REPEATS}\n"
    process = start(tmp_path_factory.mktemp("contained"), upstream, dead_port, limits, [WORKER])
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def worker(contained: GatewayProcess) -> Agent:
    return Agent(contained.workdir, WORKER)


@pytest.fixture(scope="module")
def admin_key(contained: GatewayProcess) -> str:
    settings = load_settings(contained.config)
    database = settings.open_database()
    try:
        return PrincipalRegistry(database, SystemClock()).create_key("admin")[1]
    finally:
        database.dispose()


def test_the_kill_switch_stops_a_running_agent_within_one_call(
    contained: GatewayProcess, worker: Agent
) -> None:
    task = worker.task()
    calls: list[tuple[float, float, int, str | None]] = []
    stop = threading.Event()

    def run() -> None:
        with make_client(contained.url) as client:
            n = 0
            while not stop.is_set():
                began = time.monotonic()
                status, check, _ = deciding(task.call(client, "lookup", {"n": n}))
                calls.append((began, time.monotonic(), status, check))
                n += 1

    runner = threading.Thread(target=run)
    runner.start()
    try:
        _until(lambda: sum(c[2] == 200 for c in calls) >= 5)
        killed = contained.cli("kill", "agent", WORKER, "--reason", "stop it now")
        killed_at = time.monotonic()
        assert killed.returncode == 0, killed.stderr
        _until(lambda: sum(c[0] > killed_at for c in calls) >= 5)
    finally:
        stop.set()
        runner.join(timeout=30)
    assert calls[0][2] == 200
    # Every call that started once the kill had returned was stopped...
    after = [c for c in calls if c[0] > killed_at]
    assert after and all((c[2], c[3]) == (403, "halt") for c in after)
    # ... and at most the one call already in flight got through.
    assert sum(c[2] == 200 and c[1] > killed_at for c in calls) <= 1

    resumed = contained.cli("resume", "agent", WORKER)
    assert resumed.returncode == 0, resumed.stderr
    with make_client(contained.url) as client:
        assert deciding(task.call(client, "lookup", {"n": "again"}))[0] == 200
    details = [r["detail"] for r in audit_bodies(contained) if r["kind"] == "admin"]
    # Other tests of this module may have killed other targets first (random order).
    kill = next(
        d for d in details if d.get("action") == "containment.kill" and d["target"] == WORKER
    )
    assert (kill["target"], kill["reason"], kill["principal"]) == (WORKER, "stop it now", "admin")
    assert any(d.get("action") == "containment.resume" for d in details)


def test_kill_a_task_and_everything_over_the_management_api(
    contained: GatewayProcess, worker: Agent, admin_key: str
) -> None:
    first, second = worker.task(), worker.task()
    auth = {"Authorization": f"Bearer {admin_key}"}
    with make_client(contained.url) as client:

        def manage(action: str, **body: Any) -> httpx.Response:
            return client.post(f"/v1/containment/{action}", json=body, headers=auth)

        assert manage("kill", scope="task", target=first.id).status_code == 201
        assert deciding(first.call(client, "lookup", {}))[:2] == (403, "halt")
        assert deciding(second.call(client, "lookup", {}))[0] == 200
        assert manage("kill", scope="all", reason="incident").status_code == 201
        status, check, reason = deciding(second.call(client, "lookup", {"n": 1}))
        assert (status, check) == (403, "halt") and "every call" in reason
        listed = client.get("/v1/containment/suspensions", headers=auth).json()["suspensions"]
        assert {(h["scope"], h["target"]) for h in listed} == {("task", first.id), ("all", "*")}
        assert manage("resume", scope="all").status_code == 200
        assert deciding(second.call(client, "lookup", {"n": 2}))[0] == 200
        assert deciding(first.call(client, "lookup", {"n": 2}))[:2] == (403, "halt")
        assert manage("resume", scope="task", target=first.id).status_code == 200
        assert deciding(first.call(client, "lookup", {"n": 3}))[0] == 200
        # A principal without the admin role may not.
        refused = client.post(
            "/v1/containment/kill", json={"scope": "all"}, headers={"Authorization": "Bearer x"}
        )
        assert refused.status_code == 401


def test_a_rate_limited_call_says_when_to_retry(contained: GatewayProcess, worker: Agent) -> None:
    task = worker.task(tools=("throttled",))
    with make_client(contained.url) as client:
        for n in range(2):
            assert deciding(task.call(client, "throttled", {"n": n}))[0] == 200
        refused = task.call(client, "throttled", {"n": 2})
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "2"
    problem = refused.json()
    assert problem["type"] == "urn:ztgate:problem:rate-limited"
    assert 1.5 < problem["retry_after"] <= 2.0
    assert problem["reasons"][-1]["check"] == "rate"
    (record,) = contained.audit_records(problem["call_id"])
    assert (record["outcome"], record["status"]) == ("deny", 429)


def test_the_same_call_again_and_again_is_denied_and_flagged(
    contained: GatewayProcess, worker: Agent
) -> None:
    task = worker.task()
    with make_client(contained.url) as client:
        for _ in range(LOOP_REPEATS):
            assert deciding(task.call(client, "lookup", {"q": "same"}))[0] == 200
        status, check, reason = deciding(task.call(client, "lookup", {"q": "same"}))
        assert (status, check) == (403, "loop") and "a loop" in reason
        assert deciding(task.call(client, "lookup", {"q": "other"}))[0] == 200
    flags = [
        r
        for r in audit_bodies(contained)
        if r["kind"] == "containment" and r.get("task_id") == task.id
    ]
    assert [f["detail"]["action"] for f in flags] == ["loop.flag"]
    metrics = httpx.get(f"{contained.url}/metrics", timeout=10).text
    assert "ztgate_loops_flagged_total 1.0" in metrics


def test_a_call_budget_is_enforced_and_survives_a_restart(
    contained: GatewayProcess, worker: Agent
) -> None:
    task = worker.task(budget_calls=3)
    with make_client(contained.url) as client:
        for n in range(2):
            assert deciding(task.call(client, "lookup", {"n": n}))[0] == 200
    contained.stop()  # a graceful stop writes the use behind
    contained.start()
    with make_client(contained.url) as client:
        assert deciding(task.call(client, "lookup", {"n": 2}))[0] == 200
        status, check, reason = deciding(task.call(client, "lookup", {"n": 3}))
    assert (status, check) == (403, "budget")
    assert "used its budget of 3 calls" in reason
    rows = contained._query("SELECT calls FROM task_usage WHERE task_id = ?", (task.id,))
    assert rows in ([(2,)], [(3,)])  # the third is written within a second, or at the next stop


def _until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)
