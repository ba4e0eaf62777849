"""The scripted demo: its raw requests, how it records answers, and one live run."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import orjson
import pytest
from rich.console import Console

from ztgate.config import GatewaySettings
from ztgate.demo.scenario import RAW, SCOPE, Scenario, _show_audit, live_gateway, play
from ztgate.errors import InvalidInputError
from ztgate.jsonlimits import JsonTooDeepError, parse_json
from ztgate.sdk import CallDenied, Reason
from ztgate.tasks.scope import parse_scope

DEFAULTS = GatewaySettings()


def test_the_raw_requests_break_the_default_limits_they_mean_to() -> None:
    assert len(RAW["Send a 2 MiB body"][0]) > DEFAULTS.max_body_bytes
    malformed, deep = RAW["Send malformed JSON"][0], RAW["Send JSON nested 100 levels deep"][0]
    assert len(deep) <= DEFAULTS.max_body_bytes
    with pytest.raises(InvalidInputError) as caught:
        parse_json(malformed, max_depth=DEFAULTS.max_json_depth)
    assert not isinstance(caught.value, JsonTooDeepError)
    with pytest.raises(JsonTooDeepError):
        parse_json(deep, max_depth=DEFAULTS.max_json_depth)


def test_the_task_scope_is_valid_and_limits_the_mail_domain() -> None:
    scope = parse_scope(SCOPE)
    assert scope.violation("send_email", {"to": "alice@example.com"}) is None
    assert scope.violation("send_email", {"to": "mallory@evil.example"}) is not None


def test_a_step_is_recorded_with_its_status_outcome_and_reason() -> None:
    scenario = Scenario()
    assert scenario.expect("allowed", 200, lambda: {"forecast": "sunny"}) == {"forecast": "sunny"}
    assert scenario.ok

    def denied() -> None:
        raise CallDenied("no", reasons=(Reason("scope", "deny", "tool 'x' is not in scope"),))

    assert scenario.expect("denied", 403, denied) is None
    assert scenario.ok
    scenario.expect("unexpected", 200, denied)
    assert not scenario.ok
    assert scenario.table.row_count == 3


def test_a_raw_answer_is_recorded_by_its_reasons_or_detail() -> None:
    scenario = Scenario()
    scenario.raw("limit", 413, httpx.Response(413, content=orjson.dumps({"detail": "too big"})))
    reasons = {"reasons": [{"check": "proof", "outcome": "deny", "reason": "replay"}]}
    scenario.raw("replay", 403, httpx.Response(403, content=orjson.dumps(reasons)))
    assert scenario.ok and scenario.table.row_count == 2
    scenario.raw("wrong", 200, httpx.Response(403, content=orjson.dumps(reasons)))
    assert not scenario.ok


def test_the_scenario_against_a_live_gateway(tmp_path: Path) -> None:
    """The one test that starts a real gateway process (with the demo tools)."""
    with live_gateway(tmp_path) as (url, settings):
        assert settings.demo.tools is True
        assert settings.gateway.authentication == "required"
        scenario = Scenario()
        output = io.StringIO()
        play(Console(file=output, width=200), url, settings, scenario)
        table = io.StringIO()
        Console(file=table, width=300).print(scenario.table)
        assert scenario.ok, table.getvalue()
        text = table.getvalue()
        for reason in (
            "already used (replay)",
            "made for another task",
            "is completed",
            "argument came from untrusted content; injection found in an earlier result",
            "a critical tool: a human approves each call",
        ):
            assert reason in text
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        allowed = [
            line
            for line in metrics.splitlines()
            if line.startswith('ztgate_decisions_total{check="all",outcome="allow",phase="call"}')
        ]
        assert allowed, metrics
        # Read, mail, the replayed request's first sending, the helper's read;
        # the inbox read and the summary; the approved payment; the same two over MCP.
        assert float(allowed[0].rsplit(" ", 1)[1]) == 9.0
        assert (
            "the outbox: 3 e-mails sent, to alice@example.com, bob@example.com, bob@example.com"
            in " ".join(output.getvalue().split())
        )
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=1)  # the process is gone
    output = io.StringIO()
    assert _show_audit(Console(file=output, width=200), settings) is True
    text = output.getvalue()
    assert "audit chain main:" in text and "verifies" in text
    records = int(text.split("main: ")[1].split(" records")[0])
    assert records >= scenario.table.row_count
