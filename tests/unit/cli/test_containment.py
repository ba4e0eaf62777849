"""`ztgate kill` / `ztgate resume`: agents, tasks, everything; audited; listed; refused input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from click.testing import Result

from ztgate.config import Settings
from ztgate.errors import GatewayError, InvalidInputError, NotFoundError
from ztgate.store.database import Database
from ztgate.store.tables import audit_records

Cli = Callable[..., Result]
AGENT = "spiffe://ztgate.local/agent/mailer"


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _json(result: Result) -> Any:
    return orjson.loads(_ok(result).stdout)


def _error(result: Result, kind: type[GatewayError]) -> str:
    assert result.exit_code != 0
    assert isinstance(result.exception, kind), repr(result.exception)
    return result.exception.diagnostics()


def _admin_actions(settings: Settings) -> list[dict[str, Any]]:
    database = Database(settings.database_url)
    try:
        with database.read() as conn:
            rows = conn.execute(audit_records.select().order_by(audit_records.c.seq)).mappings()
            bodies = [orjson.loads(row["body"]) for row in rows]
    finally:
        database.dispose()
    return [b["detail"] for b in bodies if b["kind"] == "admin" and "scope" in b.get("detail", {})]


def test_kill_and_resume_an_agent(
    ztgate: Cli, settings: Settings, flatten: Callable[[str], str]
) -> None:
    out = flatten(_ok(ztgate("kill", "agent", AGENT, "--reason", "runaway")).stdout)
    assert f"killed agent {AGENT}" in out and "from the next call on" in out
    (hold,) = _json(ztgate("kill", "list", "--json"))
    assert (hold["scope"], hold["target"], hold["cause"]) == ("agent", AGENT, "kill")
    assert (hold["actor"], hold["reason"]) == ("admin", "runaway")
    table = flatten(_ok(ztgate("kill", "list")).stdout)
    assert "1 stopped" in table and "runaway" in table
    out = flatten(_ok(ztgate("resume", "agent", AGENT, "--reason", "fixed")).stdout)
    assert f"resumed agent {AGENT} (lifted: kill)" in out
    assert _json(ztgate("kill", "list", "--json")) == []
    kill, resume = _admin_actions(settings)
    assert kill["action"] == "containment.kill" and kill["principal"] == "admin"
    assert resume["action"] == "containment.resume" and resume["reason"] == "fixed"


def test_kill_a_task_needs_an_existing_task(ztgate: Cli) -> None:
    assert "not found" in _error(ztgate("kill", "task", "nope"), NotFoundError)
    created = _json(
        ztgate("tasks", "create", "--agent", AGENT, "--intent", "x", "--tool", "t", "--json")
    )
    task_id = created["task"]["id"]
    _ok(ztgate("kill", "task", task_id))
    _ok(ztgate("resume", "task", task_id))


def test_kill_all_and_resume_all(ztgate: Cli, flatten: Callable[[str], str]) -> None:
    assert "killed every call" in flatten(_ok(ztgate("kill", "all")).stdout)
    _ok(ztgate("kill", "agent", AGENT))
    assert "resumed every call" in flatten(_ok(ztgate("resume", "all")).stdout)
    # Agents stopped one by one stay stopped.
    assert [h["scope"] for h in _json(ztgate("kill", "list", "--json"))] == ["agent"]


def test_resume_of_nothing_stopped_is_an_error(ztgate: Cli) -> None:
    assert "not found" in _error(ztgate("resume", "agent", AGENT), NotFoundError)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("kill", "agent", "not-an-id"), "SPIFFE"),
        (("kill", "all", "--principal", "nobody"), "no principal 'nobody'"),
        (("kill", "all", "--reason", "x" * 501), "reason"),
    ],
)
def test_refused_input(ztgate: Cli, args: tuple[str, ...], message: str) -> None:
    assert message in _error(ztgate(*args), InvalidInputError)


def test_only_admins_kill(ztgate: Cli) -> None:
    _ok(ztgate("principals", "add", "alice", "--role", "tasks"))
    message = _error(ztgate("kill", "all", "--principal", "alice"), InvalidInputError)
    assert "lacks the 'admin' role" in message
