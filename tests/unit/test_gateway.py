"""`Gateway.handle` end to end, in process, against a real upstream on loopback.

The upstream is an aiohttp.web server in the test's own event loop; the
gateway is built from settings exactly as `ztgate serve` builds it, and the
audit log is read back from the database it wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import sqlite3
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from ztgate.audit.reader import AuditReader
from ztgate.cli.toml import array_of_tables, value
from ztgate.clock import SystemClock
from ztgate.errors import InvalidInputError, StoreError, StoreUnavailableError
from ztgate.gateway import CallReport, Failure, Gateway, time_ordered_id
from ztgate.models import Outcome, Phase, ToolCall, ToolResult, Verdict
from ztgate.pipeline import CallContext, Check, ResultCheck
from ztgate.principals.registry import Principal
from ztgate.schema.check import ArgumentsSchemaCheck, ResultSchemaCheck
from ztgate.store.database import Database
from ztgate.testing import make_settings, make_tool
from ztgate.tools.model import RiskTier
from ztgate.tools.registry import ToolRegistry

QUERY_SCHEMA = {
    "type": "object",
    "properties": {"q": {"type": "string", "maxLength": 20}},
    "required": ["q"],
    "additionalProperties": False,
}
LEAK = "LEAK-must-not-reach-the-agent"


@dataclass(frozen=True)
class Arrival:
    """One request the upstream got, and the audit records of its call at that moment."""

    path: str
    call_id: str | None
    arguments: Any
    recorded_kinds: tuple[str, ...]


@dataclass
class Upstream:
    base: str = ""
    arrivals: list[Arrival] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    db_path: Path | None = None  # set once the gateway's database exists

    def kinds_recorded(self, call_id: str | None) -> tuple[str, ...]:
        if self.db_path is None or call_id is None:
            return ()
        with contextlib.closing(sqlite3.connect(self.db_path)) as conn:
            rows = conn.execute(
                "SELECT kind FROM audit_records WHERE call_id = ? ORDER BY seq", (call_id,)
            ).fetchall()
        return tuple(row[0] for row in rows)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()

    async def arrive(request: web.Request) -> Any:
        body = await request.read()
        call_id = request.headers.get("X-Ztgate-Call-Id")
        arguments = orjson.loads(body) if body else None
        server.arrivals.append(
            Arrival(request.path, call_id, arguments, server.kinds_recorded(call_id))
        )
        return arguments

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"echo": await arrive(request)})

    async def shaped(request: web.Request) -> web.Response:
        arguments = await arrive(request)
        count = LEAK if arguments.get("leak") else 3
        return web.json_response({"count": count})

    async def slow(request: web.Request) -> web.Response:
        await arrive(request)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.release.wait(), 30)
        return web.json_response({"slept": True})

    async def fail(request: web.Request) -> web.Response:
        await arrive(request)
        return web.json_response({"error": "boom"}, status=500)

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/shaped", shaped)
    app.router.add_post("/slow", slow)
    app.router.add_post("/fail", fail)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


def gateway_toml(base: str, **sections: dict[str, Any]) -> str:
    """A config declaring the test tools on `base`, plus `sections` ([store], [audit], ...)."""
    tools = [
        {"name": "lookup", "url": f"{base}/echo", "risk": "read", "input_schema": QUERY_SCHEMA},
        {"name": "send", "url": f"{base}/echo", "risk": "write", "input_schema": QUERY_SCHEMA},
        {"name": "wipe", "url": f"{base}/echo", "risk": "critical", "input_schema": QUERY_SCHEMA},
        {
            "name": "slow",
            "url": f"{base}/slow",
            "risk": "read",
            "input_schema": {"type": "object"},
            "timeout_seconds": 0.2,
        },
        {
            "name": "slow_write",
            "url": f"{base}/slow",
            "risk": "write",
            "input_schema": {"type": "object"},
            "timeout_seconds": 0.2,
        },
        {"name": "fail", "url": f"{base}/fail", "risk": "read", "input_schema": {"type": "object"}},
        {
            "name": "shaped",
            "url": f"{base}/shaped",
            "risk": "read",
            "input_schema": {"type": "object"},
            "output_schema": {
                "type": "object",
                "properties": {"count": {"type": "integer"}},
                "required": ["count"],
            },
        },
    ]
    # These tests are about the pipeline, audit and forwarding: no authentication.
    sections = {"gateway": {"authentication": "off"}} | dict(sections)
    if "authentication" not in sections["gateway"]:
        sections["gateway"] = {"authentication": "off", **sections["gateway"]}
    text = ""
    for name, settings in sections.items():
        text += f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in settings.items())
    return text + "\n" + array_of_tables("tools", tools)


Build = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def build(tmp_path: Path, upstream: Upstream) -> AsyncIterator[Build]:
    """Start a gateway from settings (with `checks`, `result_checks`, TOML sections)."""
    started: list[Gateway] = []

    async def start(
        *,
        checks: Sequence[Check] | None = None,
        result_checks: Sequence[ResultCheck] | None = None,
        **sections: dict[str, Any],
    ) -> Gateway:
        settings = make_settings(tmp_path, gateway_toml(upstream.base, **sections))
        # The policies permit everything here: the default set is tested in
        # tests/unit/policy and tests/integration/test_policy.py.
        (settings.path(settings.policy.dir) / "default.cedar").write_text(
            "permit (principal, action, resource);\n", encoding="utf-8"
        )
        gw = Gateway.from_settings(settings, checks=checks, result_checks=result_checks)
        await gw.start()
        started.append(gw)
        upstream.db_path = settings.path(settings.data_dir) / "ztgate.db"
        return gw

    yield start
    for gw in started:
        await gw.stop()


@pytest.fixture
async def gateway(build: Build) -> Gateway:
    return await build()


def records(gw: Gateway, call_id: str | None = None) -> list[dict[str, Any]]:
    """The audit record bodies of the gateway's chain (of one call, if named)."""
    bodies = [orjson.loads(r.body) for r in AuditReader(gw.database).records(gw.audit.chain)]
    return [b for b in bodies if call_id is None or b.get("call_id") == call_id]


def sample(gw: Gateway, name: str, **labels: str) -> float | None:
    return gw.metrics.registry.get_sample_value(name, labels)


# Without authentication, containment's kill switch and (tool) limits come first.
CONTAINED = ["halt", "limits"]


def checks_of(items: Sequence[Verdict] | Sequence[dict[str, str]]) -> list[str]:
    return [i.check if isinstance(i, Verdict) else i["check"] for i in items]


async def call(gw: Gateway, tool: str, arguments: dict[str, Any] | None = None) -> CallReport:
    return await gw.handle(
        gw.new_call(tool, arguments if arguments is not None else {}, justification="a test")
    )


class Fixed:
    """A pre-call check that always says the same thing."""

    def __init__(self, name: str, outcome: Outcome, reason: str) -> None:
        self.name = name
        self._verdict = Verdict(name, outcome, reason)

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        return self._verdict


class FixedResult(Fixed):
    """A post-call check that always says the same thing."""

    async def __call__(  # type: ignore[override]
        self, call: ToolCall, result: ToolResult, ctx: CallContext
    ) -> Verdict:
        return self._verdict


# -- allowed calls -------------------------------------------------------------


async def test_an_allowed_read_gets_its_result_and_one_record(
    gateway: Gateway, upstream: Upstream
) -> None:
    report = await call(gateway, "lookup", {"q": "lisbon"})
    assert report.outcome is Outcome.ALLOW
    assert report.failure is None
    assert report.result is not None
    assert report.result.body == {"echo": {"q": "lisbon"}}
    assert report.decision is not None and report.decision.outcome is Outcome.ALLOW
    assert report.review is not None and report.review.phase is Phase.RESULT
    assert [(a.path, a.call_id) for a in upstream.arrivals] == [("/echo", report.call.call_id)]
    assert upstream.arrivals[0].recorded_kinds == ()  # a read is recorded after it ran

    (record,) = records(gateway, report.call.call_id)
    assert record["kind"] == "result"
    assert record["outcome"] == "allow"
    assert record["status"] == 200
    assert record["tool"] == "lookup"
    assert record["arguments_sha256"] == report.call.arguments_sha256
    assert record["justification"] == "a test"
    assert "lisbon" in record["arguments_preview"]
    assert record["detail"] == {"phase": "result", "upstream_status": 200}
    # The one record carries the decision's verdicts as well as the review's.
    assert checks_of(record["reasons"]) == [
        *CONTAINED,
        "justification",
        "schema",
        "injection_seen",
        "pinning",
        "provenance",
        "dlp",
        "egress",
        "policy",
        "result_schema",
        "injection",
        "provenance_record",
    ]
    assert record["reasons"][len(CONTAINED) + 1] == {
        "check": "schema",
        "outcome": "allow",
        "reason": "arguments match the schema",
    }
    assert records(gateway) == [record]


@pytest.mark.parametrize("tool", ["send", "wipe"])
async def test_an_allowed_write_is_recorded_before_it_runs_and_after(
    gateway: Gateway, upstream: Upstream, tool: str
) -> None:
    report = await call(gateway, tool, {"q": "hello"})
    assert report.outcome is Outcome.ALLOW
    call_id = report.call.call_id
    # The decision record was committed when the tool received the call.
    assert upstream.arrivals[0].recorded_kinds == ("decision",)

    decision, result = records(gateway, call_id)
    assert (decision["kind"], decision["outcome"]) == ("decision", "allow")
    assert "status" not in decision
    assert decision["detail"] == {"phase": "call"}
    assert checks_of(decision["reasons"]) == [
        *CONTAINED,
        "justification",
        "schema",
        "injection_seen",
        "pinning",
        "provenance",
        "dlp",
        "egress",
        "policy",
    ]
    assert (result["kind"], result["outcome"], result["status"]) == ("result", "allow", 200)
    assert result["seq"] == decision["seq"] + 1
    assert checks_of(result["reasons"]) == [
        "result_schema",
        "injection",
        "provenance_record",
    ]  # the decision was recorded already


@pytest.mark.parametrize(
    ("tiers", "tool", "kinds"),
    [
        ([], "send", ["result"]),
        (["read", "write", "critical"], "lookup", ["decision", "result"]),
        (["critical"], "send", ["result"]),
        (["critical"], "wipe", ["decision", "result"]),
    ],
)
async def test_record_before_forward_decides_which_tiers_get_two_records(
    build: Build, tiers: list[str], tool: str, kinds: list[str]
) -> None:
    gw = await build(audit={"record_before_forward": tiers})
    report = await call(gw, tool, {"q": "x"})
    assert report.outcome is Outcome.ALLOW
    assert [r["kind"] for r in records(gw, report.call.call_id)] == kinds


async def test_the_http_answer_verdicts_are_the_decisions_and_the_reviews(
    gateway: Gateway,
) -> None:
    report = await call(gateway, "lookup", {"q": "a"})
    assert report.decision is not None and report.review is not None
    assert checks_of(report.decision.verdicts) == [
        *CONTAINED,
        "justification",
        "schema",
        "injection_seen",
        "pinning",
        "provenance",
        "dlp",
        "egress",
        "policy",
    ]
    assert checks_of(report.review.verdicts) == ["result_schema", "injection", "provenance_record"]


# -- denied calls ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "reason"),
    [
        ("no_such_tool", {}, "unknown tool 'no_such_tool'"),
        ("lookup", {}, "'q' is a required property"),
        ("lookup", {"q": 5}, "violates type 'string'"),
        ("lookup", {"q": "x", "shell": "rm -rf /"}, "1 unexpected property"),
        ("send", {"q": "x" * 21}, "violates maxLength 20"),
    ],
)
async def test_a_denied_call_never_reaches_the_upstream(
    gateway: Gateway, upstream: Upstream, tool: str, arguments: dict[str, Any], reason: str
) -> None:
    report = await call(gateway, tool, arguments)
    assert report.outcome is Outcome.DENY
    assert report.result is None and report.review is None and report.failure is None
    assert report.decision is not None and report.decision.outcome is Outcome.DENY
    assert upstream.arrivals == []

    (record,) = records(gateway, report.call.call_id)
    assert (record["kind"], record["outcome"], record["status"]) == ("decision", "deny", 403)
    assert record["tool"] == tool
    (recorded,) = record["reasons"]
    assert recorded["check"] == "schema" and recorded["outcome"] == "deny"
    assert reason in recorded["reason"]
    assert "rm -rf" not in orjson.dumps(record["reasons"]).decode()


async def test_a_check_that_asks_becomes_a_deny_by_approval(
    build: Build, upstream: Upstream
) -> None:
    asks = Fixed("needs_human", Outcome.ASK, "sending mail needs a human")
    gw = await build(checks=[ArgumentsSchemaCheck(), asks])
    report = await call(gw, "send", {"q": "x"})
    assert report.outcome is Outcome.DENY
    assert report.decision is not None
    assert report.decision.outcome is Outcome.DENY
    assert checks_of(report.decision.verdicts) == [*CONTAINED, "schema", "needs_human", "approval"]
    approval = report.decision.verdicts[-1]
    assert approval.outcome is Outcome.DENY
    assert "only a task's call can wait for approval" in approval.reason
    assert upstream.arrivals == []
    (record,) = records(gw, report.call.call_id)
    assert (record["kind"], record["outcome"], record["status"]) == ("decision", "deny", 403)
    assert "approval" in checks_of(record["reasons"])


async def test_the_record_of_an_ask_turned_deny_names_the_check_that_asked(
    build: Build,
) -> None:
    """Otherwise the audit log says a human had to approve, but not which check wanted one."""
    asks = Fixed("needs_human", Outcome.ASK, "sending mail needs a human")
    gw = await build(checks=[ArgumentsSchemaCheck(), asks])
    report = await call(gw, "send", {"q": "x"})
    (record,) = records(gw, report.call.call_id)
    assert "needs_human" in checks_of(record["reasons"])


async def test_a_deny_after_an_ask_is_a_plain_deny(build: Build, upstream: Upstream) -> None:
    gw = await build(
        checks=[
            Fixed("needs_human", Outcome.ASK, "ask"),
            Fixed("policy", Outcome.DENY, "not on weekends"),
        ]
    )
    report = await call(gw, "lookup", {"q": "x"})
    assert report.decision is not None
    assert checks_of(report.decision.verdicts) == [*CONTAINED, "needs_human", "policy"]
    assert upstream.arrivals == []


async def test_no_pre_call_checks_at_all_means_every_call_is_denied(
    build: Build, upstream: Upstream
) -> None:
    gw = await build(checks=[])
    report = await call(gw, "lookup", {"q": "x"})
    assert report.outcome is Outcome.DENY
    assert upstream.arrivals == []


async def test_an_allowing_custom_check_cannot_let_an_unknown_tool_through(
    build: Build, upstream: Upstream
) -> None:
    gw = await build(checks=[Fixed("yes", Outcome.ALLOW, "always")])
    report = await call(gw, "no_such_tool", {})
    assert report.outcome is Outcome.DENY
    assert report.result is None
    assert upstream.arrivals == []
    (record,) = records(gw, report.call.call_id)
    # The call was refused (403): its record must not say it was allowed.
    assert (record["kind"], record["status"]) == ("decision", 403)
    assert record["outcome"] == "deny"


# -- upstream failures and withheld results ------------------------------------------


@pytest.mark.parametrize(
    ("tool", "kinds"), [("slow", ["result"]), ("slow_write", ["decision", "result"])]
)
async def test_an_upstream_timeout_is_reported_and_recorded(
    gateway: Gateway, tool: str, kinds: list[str]
) -> None:
    started = time.monotonic()
    report = await call(gateway, tool)
    assert time.monotonic() - started < 3
    assert report.failure is Failure.UPSTREAM_TIMEOUT
    assert report.result is None
    assert report.outcome is Outcome.DENY
    assert "did not answer within 0.2s" in report.detail
    found = records(gateway, report.call.call_id)
    assert [r["kind"] for r in found] == kinds
    error = found[-1]
    assert (error["outcome"], error["status"]) == ("error", 504)
    assert error["reasons"] == [{"check": "upstream", "outcome": "deny", "reason": report.detail}]
    assert sample(gateway, "ztgate_upstream_errors_total", kind="upstream-timeout") == 1


async def test_an_upstream_error_status_is_a_failure(gateway: Gateway) -> None:
    report = await call(gateway, "fail")
    assert report.failure is Failure.UPSTREAM_FAILED
    assert report.result is None
    assert "HTTP 500" in report.detail
    (record,) = records(gateway, report.call.call_id)
    assert (record["kind"], record["outcome"], record["status"]) == ("result", "error", 502)


async def test_a_result_outside_the_output_schema_is_withheld(
    gateway: Gateway, upstream: Upstream
) -> None:
    good = await call(gateway, "shaped", {})
    assert good.outcome is Outcome.ALLOW
    assert good.result is not None and good.result.body == {"count": 3}

    report = await call(gateway, "shaped", {"leak": True})
    assert len(upstream.arrivals) == 2  # the tool ran
    assert report.failure is Failure.RESULT_WITHHELD
    assert report.result is None
    assert report.outcome is Outcome.DENY
    assert report.review is not None and report.review.outcome is Outcome.DENY
    assert "output schema" in report.detail
    assert LEAK not in repr(report)
    (record,) = records(gateway, report.call.call_id)
    assert (record["kind"], record["outcome"], record["status"]) == ("result", "deny", 502)
    assert record["detail"]["phase"] == "result"
    assert LEAK not in orjson.dumps(record).decode()


@pytest.mark.parametrize("outcome", [Outcome.DENY, Outcome.ASK])
async def test_a_result_check_that_does_not_allow_withholds_the_result(
    build: Build, upstream: Upstream, outcome: Outcome
) -> None:
    gw = await build(
        result_checks=[ResultSchemaCheck(), FixedResult("dlp", outcome, "looks like a secret")]
    )
    report = await call(gw, "lookup", {"q": "x"})
    assert len(upstream.arrivals) == 1
    assert report.failure is Failure.RESULT_WITHHELD
    assert report.result is None
    assert report.outcome is Outcome.DENY
    assert report.detail == "looks like a secret"
    (record,) = records(gw, report.call.call_id)
    assert (record["outcome"], record["status"]) == ("deny", 502)
    assert checks_of(record["reasons"]) == ["dlp"]


async def test_no_result_checks_passes_the_result_through(build: Build) -> None:
    gw = await build(result_checks=[])
    report = await call(gw, "lookup", {"q": "x"})
    assert report.outcome is Outcome.ALLOW
    assert report.review is not None
    assert checks_of(report.review.verdicts) == ["pipeline"]


# -- changes made by another process ------------------------------------------------


async def test_a_tool_registered_by_another_process_is_seen_on_the_next_call(
    gateway: Gateway, upstream: Upstream
) -> None:
    before = await call(gateway, "late", {"n": 1})
    assert before.outcome is Outcome.DENY

    other = Database(gateway.settings.database_url)  # another process's connections
    try:
        registry = ToolRegistry(other, SystemClock())
        registry.add(make_tool("late", url=f"{upstream.base}/echo", risk=RiskTier.READ))
        after = await call(gateway, "late", {"n": 2})
        assert after.outcome is Outcome.ALLOW
        assert after.result is not None and after.result.body == {"echo": {"n": 2}}

        registry.add(make_tool("late", url=f"{upstream.base}/echo", enabled=False), replace=True)
        disabled = await call(gateway, "late", {"n": 3})
        assert disabled.outcome is Outcome.DENY
        assert "disabled" in disabled.decision.reasons()[0]["reason"]  # type: ignore[union-attr]

        registry.remove("late")
        gone = await call(gateway, "late", {"n": 4})
        assert "unknown tool" in gone.decision.reasons()[0]["reason"]  # type: ignore[union-attr]
    finally:
        other.dispose()
    assert [a.arguments for a in upstream.arrivals] == [{"n": 2}]


async def test_the_gateways_own_audit_writes_do_not_reload_the_catalog(
    gateway: Gateway,
) -> None:
    catalog = gateway.catalog
    for _ in range(3):
        await call(gateway, "lookup", {"q": "x"})
    assert gateway.catalog is catalog


# -- the audit log cannot be written: fail closed ---------------------------------


@contextlib.contextmanager
def exclusive_lock(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock until the block ends."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield conn
    finally:
        conn.rollback()
        conn.close()


@pytest.mark.parametrize(
    ("tool", "arguments", "reaches_upstream"),
    [
        ("no_such_tool", {}, False),  # a deny
        ("send", {"q": "x"}, False),  # a write: its decision record comes first
        ("lookup", {"q": "x"}, True),  # a read runs, but its result is never returned
    ],
)
async def test_an_unwritable_audit_log_fails_the_call_closed(
    build: Build,
    upstream: Upstream,
    tool: str,
    arguments: dict[str, Any],
    reaches_upstream: bool,
) -> None:
    gw = await build(store={"busy_timeout_ms": 50})
    assert upstream.db_path is not None
    with exclusive_lock(upstream.db_path):
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            await call(gw, tool, arguments)
        assert time.monotonic() - started < 3
    assert isinstance(caught.value, StoreUnavailableError)
    assert "locked" in caught.value.message
    assert bool(upstream.arrivals) is reaches_upstream
    assert sample(gw, "ztgate_audit_failures_total") == 1
    assert records(gw) == []

    # Once the lock is gone the gateway records and answers again.
    report = await call(gw, "lookup", {"q": "again"})
    assert report.outcome is Outcome.ALLOW
    assert [r["kind"] for r in records(gw)] == ["result"]


async def test_an_unreadable_store_is_reported_as_store_unavailable(
    gateway: Gateway, upstream: Upstream
) -> None:
    data_dir = gateway.settings.path(gateway.settings.data_dir)
    moved = data_dir.with_name("moved-away")
    # The store vanishes: no open connection to it survives.
    gateway.audit.connection.close()
    gateway.database.engine.dispose()
    data_dir.rename(moved)
    try:
        report = await call(gateway, "lookup", {"q": "x"})
    finally:
        moved.rename(data_dir)
    assert report.failure is Failure.STORE_UNAVAILABLE
    assert report.decision is None and report.result is None
    assert report.outcome is Outcome.DENY
    assert upstream.arrivals == []
    recovered = await call(gateway, "lookup", {"q": "y"})
    assert recovered.outcome is Outcome.ALLOW


async def test_a_check_whose_store_does_not_answer_is_a_503_recorded_as_such(
    build: Build, upstream: Upstream
) -> None:
    """The hot state (Redis) down: refused, fail closed, as the store's fault, not a denial."""

    class Unreachable:
        name = "proof"

        async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
            raise StoreUnavailableError("hot state (redis at redis://cache:6379/0) unavailable")

    gw = await build(checks=[Unreachable()])
    report = await call(gw, "lookup", {"q": "x"})
    assert report.failure is Failure.STORE_UNAVAILABLE
    assert report.outcome is Outcome.DENY and report.result is None
    assert report.detail == "proof: check failed: StoreUnavailableError"
    assert upstream.arrivals == []
    (record,) = records(gw, report.call.call_id)
    assert (record["kind"], record["outcome"], record["status"]) == ("decision", "deny", 503)


# -- concurrency, ids, lifecycle ---------------------------------------------------


async def test_concurrent_calls_are_all_recorded_once_in_one_chain(gateway: Gateway) -> None:
    reports = await asyncio.gather(
        *(call(gateway, "send" if i % 2 else "lookup", {"q": str(i)}) for i in range(20))
    )
    assert all(r.outcome is Outcome.ALLOW for r in reports)
    found = records(gateway)
    assert [r["seq"] for r in found] == list(range(1, len(found) + 1))
    by_call: dict[str, list[str]] = {}
    for record in found:
        by_call.setdefault(record["call_id"], []).append(record["kind"])
    assert by_call == {
        r.call.call_id: ["decision", "result"] if r.call.tool == "send" else ["result"]
        for r in reports
    }
    assert gateway.audit.batches < len(found)  # some were group-committed


async def test_new_call_hashes_the_canonical_arguments_and_stamps_the_call(
    gateway: Gateway,
) -> None:
    one = gateway.new_call("lookup", {"b": 1, "a": 1.0}, justification="why")
    two = gateway.new_call("lookup", {"a": 1, "b": 1})
    assert one.arguments_sha256 == two.arguments_sha256
    assert one.call_id != two.call_id
    assert re.fullmatch(r"[0-9a-f]{32}", one.call_id)
    assert one.justification == "why" and one.front_door == "http"
    assert abs(one.received_at - time.time()) < 60
    assert gateway.new_call("x", {}, call_id="given").call_id == "given"
    with pytest.raises(InvalidInputError):
        gateway.new_call("lookup", {"a": float("nan")})


def test_time_ordered_ids_are_32_hex_and_sort_by_time() -> None:
    ids = []
    for _ in range(5):
        ids.append(time_ordered_id())
        time.sleep(0.002)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert ids == sorted(ids)
    assert abs(int(ids[0][:12], 16) - time.time() * 1000) < 60_000
    many = {time_ordered_id() for _ in range(2000)}
    assert len(many) == 2000


async def test_stop_cancels_the_wal_checkpoint_task(build: Build) -> None:
    gw = await build()
    task = gw._checkpointer
    assert task is not None
    await asyncio.sleep(0)
    assert not task.done()
    started = time.monotonic()
    await gw.stop()
    assert time.monotonic() - started < 0.9  # not waiting out the checkpoint's 1 s sleep
    assert task.cancelled()


async def test_the_background_task_checkpoints_the_wal_into_the_database_file(
    build: Build, upstream: Upstream
) -> None:
    gw = await build()
    assert upstream.db_path is not None
    await call(gw, "lookup", {"q": "x"})  # a commit, in the WAL only
    before = upstream.db_path.read_bytes()
    # SQLite's own autocheckpoint waits for 8000 pages: only the gateway's
    # task (every second) copies the WAL into the main file this soon.
    await asyncio.sleep(1.3)
    assert upstream.db_path.read_bytes() != before
    assert gw._checkpointer is not None and not gw._checkpointer.done()


async def test_authentication_required_puts_the_authenticate_check_first(tmp_path: Path) -> None:
    import dataclasses as dc

    from ztgate.identity.authority import CertificateAuthority
    from ztgate.identity.entries import EntryRegistry
    from ztgate.models import Credentials
    from ztgate.testing import make_call

    settings = make_settings(tmp_path, '[gateway]\nauthentication = "required"\n')
    database = settings.open_database()
    try:
        registry = EntryRegistry(database, SystemClock(), "ztgate.local")
        registry.register("spiffe://ztgate.local/a", ["unix:uid:1"])
        gw = Gateway.from_settings(settings)
        assert [check.name for check in gw.pipeline.checks] == [
            "authenticate",
            "warrant",
            "halt",
            "proof",
            "limits",
            "scope",
            "justification",
            "schema",
            "injection_seen",
            "pinning",
            "provenance",
            "dlp",
            "egress",
            "policy",
        ]
        await gw.start()
        try:
            ca = CertificateAuthority.load(settings.path(settings.identity.ca_dir), SystemClock())
            assert gw.identity is not None
            call = make_call()
            ctx = CallContext(SystemClock())
            for spiffe_id, allowed in (
                ("spiffe://ztgate.local/a", True),
                ("spiffe://ztgate.local/b", False),
            ):
                token = ca.issue_jwt_svid(spiffe_id, ["ztgate"])
                verdict = await gw.identity.check(
                    dc.replace(call, credentials=Credentials(bearer=token)), ctx
                )
                assert (verdict.outcome is Outcome.ALLOW) is allowed, verdict.reason
            # A registration made elsewhere is seen once the generation moves.
            registry.register("spiffe://ztgate.local/b", ["unix:uid:2"])
            gw.refresh()
            token = ca.issue_jwt_svid("spiffe://ztgate.local/b", ["ztgate"])
            verdict = await gw.identity.check(
                dc.replace(call, credentials=Credentials(bearer=token)), ctx
            )
            assert verdict.outcome is Outcome.ALLOW, verdict.reason
        finally:
            await gw.stop()
    finally:
        database.dispose()


def test_authentication_is_required_by_default(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert settings.gateway.authentication == "required"
    assert settings.gateway.audience == "ztgate"
    gw = Gateway.from_settings(settings)
    try:
        assert gw.identity is not None
        assert [check.name for check in gw.pipeline.checks] == [
            "authenticate",
            "warrant",
            "halt",
            "proof",
            "limits",
            "scope",
            "justification",
            "schema",
            "injection_seen",
            "pinning",
            "provenance",
            "dlp",
            "egress",
            "policy",
        ]
    finally:
        gw.database.dispose()


def test_authentication_off_leaves_no_identity_or_warrant_checks(tmp_path: Path) -> None:
    gw = Gateway.from_settings(make_settings(tmp_path, '[gateway]\nauthentication = "off"\n'))
    try:
        assert gw.identity is None and gw.warrants is None
        assert [check.name for check in gw.pipeline.checks] == [
            "halt",
            "limits",
            "justification",
            "schema",
            "injection_seen",
            "pinning",
            "provenance",
            "dlp",
            "egress",
            "policy",
        ]
    finally:
        gw.database.dispose()


class _Tasks:
    """What `Gateway._asked` reads of a task: its principal and intent."""

    def get(self, task_id: str) -> Any:
        return types.SimpleNamespace(principal="alice", intent=f"the intent of {task_id}")


async def test_an_asked_task_call_waits_for_an_approval_used_once_for_the_very_call(
    build: Build, upstream: Upstream
) -> None:
    asks = Fixed("needs_human", Outcome.ASK, "sending mail needs a human")
    gw = await build(checks=[ArgumentsSchemaCheck(), asks])
    gw.warrants = types.SimpleNamespace(registry=_Tasks())  # type: ignore[assignment]

    def task_call(arguments: dict[str, Any], approval_id: str | None = None) -> ToolCall:
        made = gw.new_call("send", arguments, justification="a test", approval_id=approval_id)
        return dataclasses.replace(made, agent="spiffe://ztgate.local/agent/a", task_id="t1")

    pending = await gw.handle(task_call({"q": "x"}))
    assert pending.outcome is Outcome.ASK and pending.approval is not None
    assert upstream.arrivals == []
    (record,) = records(gw, pending.call.call_id)
    assert (record["outcome"], record["status"]) == ("ask", 202)
    assert record["detail"]["approval"] == pending.approval.id
    request = pending.approval.request
    assert (request["principal"], request["intent"]) == ("alice", "the intent of t1")

    approval_id = pending.approval.id
    early = await gw.handle(task_call({"q": "x"}, approval_id))
    assert early.outcome is Outcome.DENY  # not decided yet
    approver = Principal("bob", "human", ("approver",), 0.0)
    await asyncio.to_thread(gw.approvals.decide, approval_id, True, principal=approver)
    changed = await gw.handle(task_call({"q": "y"}, approval_id))
    assert changed.outcome is Outcome.DENY and changed.decision is not None
    assert "the arguments changed" in changed.decision.verdicts[-1].reason
    ran = await gw.handle(task_call({"q": "x"}, approval_id))
    assert ran.outcome is Outcome.ALLOW, ran
    assert ran.decision is not None
    assert checks_of(ran.decision.verdicts)[-1] == "approval"
    assert "approved by bob" in ran.decision.verdicts[-1].reason
    assert len(upstream.arrivals) == 1
    replay = await gw.handle(task_call({"q": "x"}, approval_id))
    assert replay.outcome is Outcome.DENY and len(upstream.arrivals) == 1


async def test_a_policy_reload_asked_elsewhere_is_looked_at_on_the_next_call(
    build: Build,
) -> None:
    """`ztgate policy reload` (another process) bumps the "policy" generation: no waiting."""
    from ztgate.store.generations import bump

    gw = await build(policy={"reload_check_seconds": 3600})
    assert (await call(gw, "lookup", {"q": "x"})).outcome is Outcome.ALLOW
    directory = gw.settings.path(gw.settings.policy.dir)
    (directory / "stop.cedar").write_text(
        '@id("stop")\nforbid (principal, action, resource);\n', encoding="utf-8"
    )
    assert (await call(gw, "lookup", {"q": "x"})).outcome is Outcome.ALLOW  # not looked at yet
    other = Database(gw.database.url)
    try:
        with other.write() as conn:
            bump(conn, "policy")
    finally:
        other.dispose()
    report = await call(gw, "lookup", {"q": "x"})
    assert report.outcome is Outcome.DENY
    assert report.decision is not None
    assert any("stop" in v.reason for v in report.decision.verdicts if v.check == "policy")
