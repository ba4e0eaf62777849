"""`ztgate policy`: validate, test, explain, status and schema."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import Result

from ztgate.config import Settings
from ztgate.errors import InvalidInputError
from ztgate.policy import loader
from ztgate.policy.status import STATUS_FILE, Reporter
from ztgate.store.database import Database
from ztgate.store.generations import read_all
from ztgate.store.tables import audit_records
from ztgate.testing import FrozenClock

Cli = Callable[..., Result]
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "policy-cases.yaml"


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _policies(settings: Settings) -> Path:
    return settings.path(settings.policy.dir)


def test_init_installed_the_default_set(settings: Settings) -> None:
    assert [p.name for p in _policies(settings).iterdir()] == ["default.cedar"]


def test_validate_reports_the_set(ztgate: Cli, flatten: Callable[[str], str]) -> None:
    out = flatten(_ok(ztgate("policy", "validate")).stdout)
    assert "✓ 6 policies in 1 files" in out and "valid for 0 tools" in out
    report = json.loads(_ok(ztgate("policy", "validate", "--json")).stdout)
    assert report["policies"][0]["id"] == "reads-in-scope"


def test_validate_names_file_and_line_and_exits_1(
    ztgate: Cli, settings: Settings, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.cedar").write_text(
        "permit (principal, action, resource)\nwhen { principal.rank > 1 };\n", encoding="utf-8"
    )
    result = ztgate("policy", "validate", "--dir", str(bad))
    assert result.exit_code == 1
    assert f"{bad}/x.cedar:2: attribute `rank` on entity type `Agent` not found" in result.stderr


def test_a_missing_dir_is_an_error_and_no_configured_dir_the_built_in_set(
    ztgate: Cli, settings: Settings, tmp_path: Path, flatten: Callable[[str], str]
) -> None:
    result = ztgate("policy", "validate", "--dir", str(tmp_path / "absent"))
    assert isinstance(result.exception, InvalidInputError)
    assert "no such directory" in result.exception.message
    for path in _policies(settings).iterdir():
        path.unlink()
    _policies(settings).rmdir()
    assert "(built-in defaults, version" in flatten(_ok(ztgate("policy", "validate")).stdout)


def test_test_runs_the_example_case_file(ztgate: Cli, flatten: Callable[[str], str]) -> None:
    out = flatten(_ok(ztgate("policy", "test", str(EXAMPLE))).stdout)
    assert "0 failed" in out
    report = json.loads(_ok(ztgate("policy", "test", str(EXAMPLE), "--json")).stdout)
    assert report["failed"] == 0 and report["passed"] == len(report["results"])


def test_test_exits_1_on_a_failing_case(ztgate: Cli, tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "tools: [{name: t, risk: read}]\n"
        "cases: [{name: wrong, tool: t, agent: 'spiffe://ztgate.local/a', expect: deny}]\n",
        encoding="utf-8",
    )
    result = ztgate("policy", "test", str(cases))
    assert result.exit_code == 1
    assert "1 failed" in result.stdout


def test_test_refuses_a_malformed_case_file(ztgate: Cli, tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases: [{name: a}]\n", encoding="utf-8")
    result = ztgate("policy", "test", str(cases))
    assert isinstance(result.exception, InvalidInputError)
    assert result.exception.message.startswith(f"{cases}: case 1 (a): ")
    missing = ztgate("policy", "test", str(tmp_path / "absent.yaml"))
    assert isinstance(missing.exception, InvalidInputError)


def test_explain_shows_the_deciding_policy_and_its_text(
    ztgate: Cli, flatten: Callable[[str], str]
) -> None:
    out = flatten(
        _ok(ztgate("policy", "explain", str(EXAMPLE), "--case", "secrets never leave")).stdout
    )
    assert "send_email by spiffe://ztgate.local/agent/assistant: deny" in out
    assert "secrets-stay (default.cedar:44) decided:" in out
    assert '@reason("a secret would leave through this call")' in out
    explained = json.loads(
        _ok(
            ztgate(
                "policy",
                "explain",
                str(EXAMPLE),
                "--case",
                "a critical tool asks a human",
                "--json",
            )
        ).stdout
    )
    assert explained[0]["outcome"] == "ask"
    assert explained[0]["deciding"][0]["id"] == "critical-asks"


def test_explain_a_described_call(
    ztgate: Cli, flatten: Callable[[str], str], tmp_path: Path
) -> None:
    tool_file = tmp_path / "tools.yaml"
    del tool_file
    _ok(
        ztgate(
            "tools",
            "add",
            "lookup",
            "--url",
            "http://127.0.0.1:9/q",
            "--risk",
            "read",
            "--schema",
            '{"type": "object", "properties": {"q": {"type": "string"}}}',
        )
    )
    out = flatten(
        _ok(
            ztgate(
                "policy",
                "explain",
                "--tool",
                "lookup",
                "--arguments",
                '{"q": "x"}',
                "--agent",
                "spiffe://ztgate.local/agent/a",
                "--secret",
                "aws",
            )
        ).stdout
    )
    assert "lookup by spiffe://ztgate.local/agent/a: deny" in out
    out = flatten(_ok(ztgate("policy", "explain", "--tool", "lookup", "--no-in-scope")).stdout)
    assert "lookup by an unauthenticated caller: deny" in out
    assert "denied by default" in out
    for bad in (["--arguments", "[1]"], ["--arguments", "{"]):
        result = ztgate("policy", "explain", "--tool", "lookup", *bad)
        assert isinstance(result.exception, InvalidInputError)
    assert isinstance(ztgate("policy", "explain").exception, InvalidInputError)
    result = ztgate("policy", "explain", str(EXAMPLE), "--case", "nope")
    assert isinstance(result.exception, InvalidInputError)


def test_status_before_and_after_a_gateway_reported(
    ztgate: Cli, settings: Settings, flatten: Callable[[str], str]
) -> None:
    assert "no gateway has loaded policies here yet" in _ok(ztgate("policy", "status")).stdout
    status_path = settings.path(settings.data_dir) / STATUS_FILE
    reporter = Reporter(FrozenClock(), status_path)
    snapshot = loader.load(loader.read(_policies(settings)), [])
    reporter.loaded(snapshot, first=True)
    out = flatten(_ok(ztgate("policy", "status")).stdout)
    # A long path may be wrapped anywhere: compare without whitespace.
    expected = f"in force: 6 policies from {_policies(settings)}, version {snapshot.version}"
    assert "".join(expected.split()) in "".join(out.split())
    assert "last reload 2027-01-15 08:00:00 UTC: loaded" in out
    assert "not the set in force" not in out
    reporter.rejected(["default.cedar:3: unexpected token"], snapshot)
    (_policies(settings) / "default.cedar").write_text("broken", encoding="utf-8")
    result = ztgate("policy", "status")
    assert result.exit_code == 1
    out = flatten(result.stdout)
    assert "rejected default.cedar:3: unexpected token" in out
    assert "the files on disk are not the set in force" in out
    report: dict[str, Any] = json.loads(ztgate("policy", "status", "--json").stdout)
    assert report["in_sync"] is False and report["last_attempt"]["ok"] is False


def test_schema_prints_the_cedar_schema(ztgate: Cli) -> None:
    _ok(
        ztgate(
            "tools",
            "add",
            "pay",
            "--url",
            "http://127.0.0.1:9/p",
            "--schema",
            '{"type": "object", "properties": {"amount": {"type": "integer"}}}',
        )
    )
    text = _ok(ztgate("policy", "schema")).stdout
    assert 'action "call:pay" in [Action::"call"]' in text
    assert "amount?: Long" in text and "__cedar" not in text
    document = json.loads(_ok(ztgate("policy", "schema", "--json")).stdout)
    assert "call:pay" in document[""]["actions"]


def test_the_installed_command_runs(
    run_ztgate: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    # No init: without a policy directory the built-in default set decides.
    done = run_ztgate("policy", "test", str(EXAMPLE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "11 passed, 0 failed" in " ".join(done.stdout.split())


@pytest.mark.parametrize("command", ["validate", "test", "explain", "status", "schema"])
def test_every_command_has_help(cli: Cli, command: str) -> None:
    assert _ok(cli("policy", command, "--help")).stdout


def _policy_generation_and_reloads(settings: Settings) -> tuple[int, list[dict[str, Any]]]:
    database = Database(settings.database_url)
    try:
        with database.read() as conn:
            generation = read_all(conn).get("policy", 0)
            rows = conn.execute(audit_records.select().order_by(audit_records.c.seq)).mappings()
            bodies = [orjson.loads(row["body"]) for row in rows]
    finally:
        database.dispose()
    reloads = [b["detail"] for b in bodies if b["detail"].get("action") == "policy.reload"]
    return generation, reloads


def test_reload_validates_then_tells_every_gateway_and_records_it(
    ztgate: Cli, settings: Settings, flatten: Callable[[str], str]
) -> None:
    out = flatten(_ok(ztgate("policy", "reload")).stdout)
    assert "✓ 6 policies in" in out and "every gateway on this store looks at its files now" in out
    generation, reloads = _policy_generation_and_reloads(settings)
    assert generation == 1
    assert len(reloads) == 1 and reloads[0]["source"] == "cli"
    assert len(reloads[0]["digest"]) == 64


def test_reload_of_invalid_policies_asks_nothing_and_exits_1(
    ztgate: Cli, settings: Settings
) -> None:
    (_policies(settings) / "bad.cedar").write_text(
        "permit (principal, action, resource) when { (( };\n", encoding="utf-8"
    )
    result = ztgate("policy", "reload")
    assert result.exit_code == 1
    assert "bad.cedar" in result.stderr
    assert _policy_generation_and_reloads(settings) == (0, [])
