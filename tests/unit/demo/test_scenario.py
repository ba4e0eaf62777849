"""The scripted demo: its steps, how it describes answers, and one live run."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import orjson
import pytest
from rich.console import Console

from ztgate.config import GatewaySettings
from ztgate.demo.scenario import (
    STEPS,
    Step,
    _describe,
    _send,
    _show_audit,
    agent_identity,
    live_gateway,
)
from ztgate.errors import InvalidInputError
from ztgate.jsonlimits import JsonTooDeepError, parse_json

DEFAULTS = GatewaySettings()


def test_every_step_expects_an_http_status() -> None:
    assert STEPS
    for step in STEPS:
        assert type(step.expect) is int, step.title
        assert 200 <= step.expect < 600, step.title


def test_every_step_sends_either_a_body_or_raw_bytes() -> None:
    for step in STEPS:
        assert (step.body is None) != (step.raw is None), step.title
        if step.body is not None:
            assert isinstance(step.body, dict) and isinstance(step.body["tool"], str)


def test_titles_are_unique_and_the_demo_shows_both_outcomes() -> None:
    assert len({step.title for step in STEPS}) == len(STEPS)
    expected = {step.expect for step in STEPS}
    assert 200 in expected and 403 in expected


def test_the_raw_steps_break_the_default_limits_they_mean_to() -> None:
    by_status = {step.expect: step for step in STEPS if step.raw is not None}
    assert len(by_status[413].raw or b"") > DEFAULTS.max_body_bytes
    malformed, deep = (s.raw for s in STEPS if s.raw is not None and s.expect == 400)
    assert malformed is not None and deep is not None
    assert len(deep) <= DEFAULTS.max_body_bytes
    with pytest.raises(InvalidInputError) as caught:
        parse_json(malformed, max_depth=DEFAULTS.max_json_depth)
    assert not isinstance(caught.value, JsonTooDeepError)
    with pytest.raises(JsonTooDeepError):
        parse_json(deep, max_depth=DEFAULTS.max_json_depth)


def test_a_step_is_frozen() -> None:
    step = Step("t", {"tool": "x"}, 200)
    with pytest.raises(AttributeError):
        step.expect = 403  # type: ignore[misc]


def response(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps(body))


def test_an_allowed_answer_is_described_by_its_result() -> None:
    outcome, why = _describe(response(200, {"result": {"forecast": "sunny"}, "verdicts": []}))
    assert outcome == "[green]allowed[/]"
    assert why == "{'forecast': 'sunny'}"


def test_a_long_result_is_cut_to_70_characters() -> None:
    _, why = _describe(response(200, {"result": "x" * 500}))
    assert why == "x" * 70


def test_a_denial_is_described_by_its_reasons() -> None:
    body = {
        "detail": "schema: ...",
        "reasons": [
            {"check": "schema", "outcome": "deny", "reason": "unknown tool 'x'"},
            {"check": "policy", "outcome": "deny", "reason": "not today"},
        ],
    }
    outcome, why = _describe(response(403, body))
    assert outcome == "[red]refused[/]"
    assert why == "unknown tool 'x'; not today"


def test_a_refusal_without_reasons_is_described_by_its_detail() -> None:
    outcome, why = _describe(response(413, {"detail": "the body is larger than 1048576 bytes"}))
    assert (outcome, why) == ("[red]refused[/]", "the body is larger than 1048576 bytes")
    assert _describe(response(400, {}))[1] == ""
    assert len(_describe(response(400, {"detail": "d" * 300}))[1]) == 110


def test_the_scenario_against_a_live_gateway(tmp_path: Path) -> None:
    """The one test that starts a real gateway process (with the demo tools)."""
    with live_gateway(tmp_path) as (url, settings):
        assert settings.demo.tools is True
        assert settings.gateway.authentication == "required"
        token = agent_identity(Console(file=io.StringIO()), settings)
        assert token is not None
        with httpx.Client(base_url=url, timeout=10) as client:
            for step in STEPS:
                answer = _send(client, step, token)
                assert answer.status_code == step.expect, (step.title, answer.text)
                outcome, _ = _describe(answer)
                assert outcome == ("[green]allowed[/]" if step.expect == 200 else "[red]refused[/]")
            metrics = client.get("/metrics").text
            assert 'ztgate_decisions_total{check="all",outcome="allow",phase="call"} 2.0' in metrics
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=1)  # the process is gone
    output = io.StringIO()
    assert _show_audit(Console(file=output, width=200), settings) is True
    text = output.getvalue()
    assert "audit chain main:" in text and "verifies" in text
    records = int(text.split("main: ")[1].split(" records")[0])
    assert records >= len(STEPS)
