"""`ztgate mcp connect`: its options, and its refusals before anything starts."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result

from ztgate.errors import InvalidInputError


def test_connect_needs_a_task(ztgate: Callable[..., Result]) -> None:
    done = ztgate("mcp", "connect")
    assert done.exit_code != 0
    assert "--task" in done.output


def test_a_negative_approval_timeout_is_refused(ztgate: Callable[..., Result]) -> None:
    done = ztgate("mcp", "connect", "--task", "01t", "--approval-timeout", "-1")
    assert isinstance(done.exception, InvalidInputError)
    assert "--approval-timeout must not be negative" in done.exception.message


def test_without_a_workload_api_it_is_one_line_and_exit_1(
    ztgate: Callable[..., Result], capfd: pytest.CaptureFixture[str]
) -> None:
    done = ztgate("mcp", "connect", "--task", "01t", "--socket", "/nonexistent/agent.sock")
    assert done.exit_code == 1
    err = capfd.readouterr().err + done.output
    lines = [line for line in err.splitlines() if line.startswith("ztgate: ")]
    assert len(lines) == 1 and "IdentityError" in lines[0] and "agent.sock" in lines[0], err


def test_add_list_and_remove_servers(ztgate: Callable[..., Result]) -> None:
    added = ztgate(
        "mcp", "add", "files", "--command", "/usr/bin/python3", "--arg", "server.py",
        "--path", "/srv/files", "--read-only", "notes", "--env", "LOG_LEVEL=info",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "added MCP server files (stdio: /usr/bin/python3 server.py)" in added.output
    assert ztgate("mcp", "add", "remote", "--url", "https://mcp.example.com/mcp").exit_code == 0
    listed = ztgate("mcp", "list", "--json")
    assert [s["name"] for s in json.loads(listed.output)] == ["files", "remote"]
    assert json.loads(listed.output)[0]["read_only_tools"] == ["notes"]
    assert ztgate("mcp", "remove", "files").exit_code == 0
    assert "remote http: https://mcp.example.com/mcp" in ztgate("mcp", "list").output


def test_an_unsandboxed_server_is_said_to_be(ztgate: Callable[..., Result]) -> None:
    done = ztgate("mcp", "add", "local", "--command", "/bin/cat", "--no-sandbox")
    assert "without a sandbox" in done.output
    assert "unsandboxed" in ztgate("mcp", "list").output


def test_add_needs_exactly_one_way_to_reach_the_server(ztgate: Callable[..., Result]) -> None:
    for args in ((), ("--command", "/bin/cat", "--url", "https://x.example/mcp")):
        done = ztgate("mcp", "add", "files", *args)
        assert isinstance(done.exception, InvalidInputError)
    bad = ztgate("mcp", "add", "files", "--command", "/bin/cat", "--env", "NOEQUALS")
    assert isinstance(bad.exception, InvalidInputError)
    assert "NAME=VALUE" in bad.exception.message


def test_removing_an_unknown_server_fails(ztgate: Callable[..., Result]) -> None:
    assert ztgate("mcp", "remove", "ghost").exit_code != 0


def test_adding_and_removing_are_audited(ztgate: Callable[..., Result]) -> None:
    assert ztgate("mcp", "add", "remote", "--url", "https://mcp.example.com/mcp").exit_code == 0
    assert ztgate("mcp", "remove", "remote").exit_code == 0
    tail = ztgate("audit", "tail", "--json")
    records = [json.loads(line) for line in tail.output.splitlines() if line.strip()]
    actions = [r["detail"].get("action") for r in records]
    assert "mcp.add" in actions and "mcp.remove" in actions
