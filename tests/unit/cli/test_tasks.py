"""`ztgate tasks`: create, list, show, complete, revoke, revoke-warrant."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import Result

from ztgate.cli.tasks import parse_duration
from ztgate.errors import ConflictError, InvalidInputError, NotFoundError

Cli = Callable[..., Result]
AGENT = "spiffe://ztgate.local/agent/mailer"


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _json(result: Result) -> Any:
    return orjson.loads(_ok(result).stdout)


def _create(ztgate: Cli, *extra: str) -> dict[str, Any]:
    created: dict[str, Any] = _json(
        ztgate("tasks", "create", "--agent", AGENT, "--intent", "mail the report", "--json", *extra)
    )
    return created


def test_create_with_tools_and_a_scope_file(ztgate: Cli, tmp_path: Path) -> None:
    scope = tmp_path / "scope.json"
    scope.write_text(
        json.dumps({"tools": {"send_email": {"limits": {"to": {"domains": ["acme.example"]}}}}})
    )
    created = _create(ztgate, "--tool", "lookup", "--scope", f"@{scope}", "--expires-in", "15m")
    task = created["task"]
    assert task["state"] == "active" and task["principal"] == "admin"
    assert task["scope"]["tools"]["lookup"] == {}
    assert task["scope"]["tools"]["send_email"]["limits"]["/to"] == {"domains": ["acme.example"]}
    assert 899 <= task["expires_at"] - task["created_at"] <= 901
    shown = _json(ztgate("tasks", "show", task["id"], "--json"))
    (root,) = shown["warrants"]
    assert root["id"] == created["warrant_id"] and root["jkt"] is None
    assert "not bound yet" in _ok(ztgate("tasks", "show", task["id"])).stdout


def test_list_complete_revoke(ztgate: Cli) -> None:
    first = _create(ztgate, "--tool", "lookup")["task"]["id"]
    second = _create(ztgate, "--tool", "lookup")["task"]["id"]
    _ok(ztgate("tasks", "complete", first))
    _ok(ztgate("tasks", "revoke", second, "--reason", "user cancelled"))
    states = {t["id"]: t["state"] for t in _json(ztgate("tasks", "list", "--json"))}
    assert states == {first: "completed", second: "revoked"}
    assert [t["id"] for t in _json(ztgate("tasks", "list", "--state", "revoked", "--json"))] == [
        second
    ]
    assert isinstance(ztgate("tasks", "complete", first).exception, ConflictError)
    assert "2 tasks" in _ok(ztgate("tasks", "list")).stdout


def test_revoke_warrant(ztgate: Cli) -> None:
    created = _create(ztgate, "--tool", "lookup")
    out = _ok(ztgate("tasks", "revoke-warrant", created["warrant_id"])).stdout
    assert created["warrant_id"] in out


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--tool", "lookup", "--principal", "nobody"), InvalidInputError),
        (("--scope", "not json"), InvalidInputError),
        (("--scope", '{"tools": {}}'), InvalidInputError),
        (("--tool", "lookup", "--expires-in", "soon"), InvalidInputError),
        (("--tool", "lookup", "--budget-calls", "0"), InvalidInputError),
    ],
)
def test_bad_input_is_an_error(ztgate: Cli, args: tuple[str, ...], error: type) -> None:
    result = ztgate("tasks", "create", "--agent", AGENT, "--intent", "x", *args)
    assert result.exit_code != 0 and isinstance(result.exception, error), result.exception


def test_a_principal_without_the_tasks_role_is_refused(ztgate: Cli) -> None:
    _ok(ztgate("principals", "add", "approver-only", "--role", "approver"))
    result = ztgate(
        "tasks", "create", "--agent", AGENT, "--intent", "x", "--tool", "t", "-p", "approver-only"
    )
    assert isinstance(result.exception, InvalidInputError)
    assert "lacks the 'tasks' role" in result.exception.message


def test_unknown_task(ztgate: Cli) -> None:
    assert isinstance(ztgate("tasks", "show", "nope").exception, NotFoundError)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "x", "-5m", "0", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_duration(text)


def test_create_with_a_call_and_a_spend_budget(ztgate: Cli) -> None:
    task = _create(ztgate, "--tool", "pay", "--budget-calls", "10", "--budget-spend", "250.5")
    assert task["task"]["budget"] == {"calls": 10, "spend": 250.5}
