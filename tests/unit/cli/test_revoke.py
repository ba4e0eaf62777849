"""`ztgate revoke`: agent, serial, entry, list; audited; refused input is an error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from click.testing import Result

from ztgate.config import Settings
from ztgate.errors import GatewayError, InvalidInputError, NotFoundError
from ztgate.identity.revocation import retention_for
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


def test_revoke_agent_and_list(
    ztgate: Cli, settings: Settings, flatten: Callable[[str], str]
) -> None:
    assert _json(ztgate("revoke", "list", "--json")) == []
    out = flatten(_ok(ztgate("revoke", "agent", AGENT, "--reason", "key leaked")).stdout)
    assert f"revoked spiffe_id {AGENT}" in out
    [row] = _json(ztgate("revoke", "list", "--json"))
    assert (row["kind"], row["value"], row["reason"]) == ("spiffe_id", AGENT, "key leaked")
    assert row["expires_at"] - row["created_at"] == retention_for(settings.identity)
    table = flatten(_ok(ztgate("revoke", "list")).stdout)
    assert "1 revocations" in table and "spiffe_id" in table


def test_revoke_serial_in_hex_or_decimal(ztgate: Cli, flatten: Callable[[str], str]) -> None:
    out = flatten(_ok(ztgate("revoke", "serial", "0x1F")).stdout)
    assert "0x1f (31)" in out
    _ok(ztgate("revoke", "serial", "4660"))
    _ok(ztgate("revoke", "serial", "AB:CD"))
    rows = _json(ztgate("revoke", "list", "--json"))
    assert [r["value"] for r in rows] == ["1f", "1234", "abcd"]


def test_revoke_entry_also_revokes_its_spiffe_id(ztgate: Cli) -> None:
    _ok(ztgate("agents", "register", AGENT, "-s", "unix:uid:1000"))
    [entry] = _json(ztgate("agents", "list", "--json"))
    _ok(ztgate("revoke", "entry", entry["id"], "-r", "retired"))
    rows = _json(ztgate("revoke", "list", "--json"))
    assert sorted((r["kind"], r["value"]) for r in rows) == [
        ("entry", entry["id"]),
        ("spiffe_id", AGENT),
    ]


def test_revocations_are_audited(ztgate: Cli, settings: Settings) -> None:
    _ok(ztgate("revoke", "agent", AGENT))
    database = Database(settings.database_url)
    try:
        with database.read() as conn:
            bodies = conn.execute(audit_records.select()).mappings().all()
    finally:
        database.dispose()
    actions = [orjson.loads(b["body"])["detail"].get("action") for b in bodies]
    assert "revocation.revoke" in actions


def test_bad_input_is_refused(ztgate: Cli) -> None:
    _error(ztgate("revoke", "agent", "spiffe://NOPE/agent"), InvalidInputError)
    _error(ztgate("revoke", "serial", "xyz"), InvalidInputError)
    _error(ztgate("revoke", "serial", "0"), InvalidInputError)
    _error(ztgate("revoke", "entry", "0123456789abcdef"), NotFoundError)
    assert _json(ztgate("revoke", "list", "--json")) == []


def test_revoke_is_a_command(ztgate: Cli, flatten: Callable[[str], str]) -> None:
    out = flatten(_ok(ztgate("revoke", "--help")).stdout)
    for command in ("agent", "serial", "entry", "list"):
        assert command in out
