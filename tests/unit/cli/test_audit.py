"""`ztgate audit`: verify (database or export), tail, export."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ztgate.audit.checkpoint import load_signer, public_pem
from ztgate.audit.log import AuditLog
from ztgate.audit.record import AuditEntry
from ztgate.config import Settings
from ztgate.errors import ConfigError, GatewayError
from ztgate.store.database import Database
from ztgate.testing import FrozenClock

Cli = Callable[..., Result]
Flat = Callable[[str], str]


@pytest.fixture
def records(settings: Settings, database: Database, clock: FrozenClock) -> int:
    """Ten records on the main chain, a checkpoint every 3 and at the end (3, 6, 9, 10)."""
    signer = load_signer(settings.path(settings.audit.signing_key))
    log = AuditLog(database, clock, signer=signer, checkpoint_every_records=3)
    for i in range(1, 11):
        clock.advance(1)
        log.append_now(
            [
                AuditEntry(
                    kind="call",
                    outcome=("allow", "deny")[i % 2],
                    call_id=f"call-{i}",
                    tool="get_weather",
                    reasons=({"check": "policy", "outcome": "deny", "reason": "no"},),
                )
            ]
        )
    log.checkpoint_now()
    return 10


@pytest.fixture
def sql(settings: Settings) -> Callable[..., None]:
    path = settings.path(settings.data_dir) / "ztgate.db"

    def run(statement: str, params: tuple[Any, ...] = ()) -> None:
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(statement, params)

    return run


def _public_key_path(settings: Settings) -> Path:
    return settings.path(settings.audit.public_key)


def test_verify_ok_exits_zero(ztgate: Cli, records: int, flatten: Flat) -> None:
    result = ztgate("audit", "verify")

    assert result.exit_code == 0, result.output
    assert "ok chain main: 10 records, 4 signed checkpoints" in flatten(result.stdout)
    assert "warning" not in result.stderr


def test_verify_json(ztgate: Cli, records: int) -> None:
    result = ztgate("audit", "verify", "--json")

    assert result.exit_code == 0
    assert orjson.loads(result.stdout) == {
        "ok": True,
        "signatures_checked": True,
        "chains": [
            {
                "chain": "main",
                "records": 10,
                "checkpoints": 4,
                "first_bad_seq": None,
                "problem": None,
            }
        ],
    }


def test_verify_an_empty_log(ztgate: Cli, flatten: Flat) -> None:
    result = ztgate("audit", "verify")

    assert result.exit_code == 0
    assert "the audit log is empty" in flatten(result.stdout)


def test_verify_after_tampering_exits_one_naming_the_record(
    ztgate: Cli, records: int, sql: Callable[..., None], flatten: Flat
) -> None:
    sql("UPDATE audit_records SET outcome = 'error' WHERE seq = 4")

    result = ztgate("audit", "verify")

    assert result.exit_code == 1
    assert "FAILED chain main: record 4:" in flatten(result.stderr)
    assert "outcome" in result.stderr


def test_verify_json_after_tampering(ztgate: Cli, records: int, sql: Callable[..., None]) -> None:
    sql("DELETE FROM audit_records WHERE seq = 6")

    result = ztgate("audit", "verify", "--json")

    assert result.exit_code == 1
    report = orjson.loads(result.stdout)
    assert report["ok"] is False
    assert report["chains"][0]["first_bad_seq"] == 6


def test_verify_without_the_public_key_warns(
    ztgate: Cli, records: int, settings: Settings, flatten: Flat
) -> None:
    _public_key_path(settings).unlink()

    result = ztgate("audit", "verify")

    assert result.exit_code == 0
    assert "signatures were not checked" in flatten(result.stderr)


def test_verify_with_a_missing_public_key_option_fails(
    ztgate: Cli, records: int, tmp_path: Path
) -> None:
    result = ztgate("audit", "verify", "--public-key", str(tmp_path / "absent.pub"))

    assert result.exit_code == 1
    assert isinstance(result.exception, ConfigError)
    assert "absent.pub" in str(result.exception)


def test_verify_with_another_public_key_fails(ztgate: Cli, records: int, tmp_path: Path) -> None:
    other = tmp_path / "other.pub"
    other.write_bytes(public_pem(Ed25519PrivateKey.generate().public_key()))

    result = ztgate("audit", "verify", "--public-key", str(other), "--json")

    assert result.exit_code == 1
    assert orjson.loads(result.stdout)["chains"][0]["first_bad_seq"] == 3


def test_export_to_a_file_then_verify_it(
    ztgate: Cli, records: int, settings: Settings, tmp_path: Path, flatten: Flat
) -> None:
    out = tmp_path / "export.jsonl"

    exported = ztgate("audit", "export", "-o", str(out))
    assert exported.exit_code == 0, exported.output
    assert "exported 10 records" in flatten(exported.stderr)
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert lines[0]["type"] == "header"
    assert sum(line["type"] == "record" for line in lines) == 10
    assert sum(line["type"] == "checkpoint" for line in lines) == 4

    verified = ztgate(
        "audit", "verify", "--file", str(out), "--public-key", str(_public_key_path(settings))
    )
    assert verified.exit_code == 0, verified.output
    assert "ok chain main: 10 records, 4 signed checkpoints" in flatten(verified.stdout)


def test_export_to_stdout(ztgate: Cli, records: int) -> None:
    result = ztgate("audit", "export")

    assert result.exit_code == 0
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [line["seq"] for line in lines if line["type"] == "record"] == list(range(1, 11))


def test_verify_a_tampered_export_names_the_record(
    ztgate: Cli, records: int, settings: Settings, tmp_path: Path, flatten: Flat
) -> None:
    out = tmp_path / "export.jsonl"
    assert ztgate("audit", "export", "-o", str(out)).exit_code == 0
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    for line in lines:
        if line["type"] == "record" and line["seq"] == 8:
            line["record"]["tool"] = "send_email"
    out.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))

    result = ztgate(
        "audit", "verify", "--file", str(out), "--public-key", str(_public_key_path(settings))
    )

    assert result.exit_code == 1
    assert "record 8" in flatten(result.stderr)


def test_verify_an_export_checked_with_another_key_fails(
    ztgate: Cli, records: int, tmp_path: Path
) -> None:
    out = tmp_path / "export.jsonl"
    assert ztgate("audit", "export", "-o", str(out)).exit_code == 0
    other = tmp_path / "other.pub"
    other.write_bytes(public_pem(Ed25519PrivateKey.generate().public_key()))

    result = ztgate("audit", "verify", "--file", str(out), "--public-key", str(other))

    assert result.exit_code == 1


def test_verify_a_file_that_is_not_an_export(ztgate: Cli, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n", encoding="utf-8")

    result = ztgate("audit", "verify", "--file", str(path))

    assert result.exit_code == 1
    assert isinstance(result.exception, GatewayError)
    assert f"{path}:1:" in str(result.exception)


def test_verify_a_missing_export_file_is_a_clean_error(ztgate: Cli, tmp_path: Path) -> None:
    # main() turns only GatewayError into the one-line `ztgate: error:`;
    # anything else reaches the user as a traceback.
    result = ztgate("audit", "verify", "--file", str(tmp_path / "absent.jsonl"))

    assert result.exit_code != 0
    assert isinstance(result.exception, GatewayError), repr(result.exception)
    assert "absent.jsonl" in str(result.exception)


def test_tail_json(ztgate: Cli, records: int) -> None:
    result = ztgate("audit", "tail", "--json", "-n", "3")

    assert result.exit_code == 0
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [line["seq"] for line in lines] == [8, 9, 10]
    assert [line["call_id"] for line in lines] == ["call-8", "call-9", "call-10"]


def test_tail_table(ztgate: Cli, records: int, flatten: Flat) -> None:
    result = ztgate("audit", "tail", "--lines", "2")

    assert result.exit_code == 0
    text = flatten(result.stdout)
    assert "main:9" in text
    assert "main:10" in text
    assert "main:8" not in text
    assert "policy: no" in text


def test_tail_rejects_a_silly_count(ztgate: Cli) -> None:
    assert ztgate("audit", "tail", "-n", "0").exit_code == 2
