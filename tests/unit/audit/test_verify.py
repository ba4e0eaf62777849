"""Verifying a chain in the database: tampering is found, and the first bad record named.

Each test builds a 20-record chain with a signed checkpoint every 5 records
(at 5, 10, 15 and 20), then changes the SQLite file directly, as someone with
access to the disk could.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ztgate.audit.checkpoint import CheckpointSigner
from ztgate.audit.reader import AuditReader
from ztgate.audit.record import AuditReceipt
from ztgate.audit.verify import ChainReport, StoredCheckpoint, StoredRecord, verify_chain
from ztgate.clock import isoformat
from ztgate.store.database import Database

Sql = Callable[..., list[tuple[Any, ...]]]
Chain = Callable[..., list[AuditReceipt]]


def _report(database: Database, public_key: Ed25519PublicKey | None) -> dict[str, ChainReport]:
    return {c.chain: c for c in AuditReader(database).verify(public_key).chains}


def _main(database: Database, public_key: Ed25519PublicKey | None) -> ChainReport:
    report = AuditReader(database).verify(public_key)
    [chain] = report.chains
    assert report.ok is chain.ok
    return chain


def _body(sql: Sql, seq: int, chain: str = "main") -> dict[str, Any]:
    [(body,)] = sql("SELECT body FROM audit_records WHERE chain = ? AND seq = ?", (chain, seq))
    value: dict[str, Any] = orjson.loads(body)
    return value


def _write_body(sql: Sql, seq: int, body: dict[str, Any], *, rehash: bool) -> None:
    text = rfc8785.dumps(body).decode()
    sql("UPDATE audit_records SET body = ? WHERE chain = 'main' AND seq = ?", (text, seq))
    if rehash:
        digest = hashlib.sha256(text.encode()).hexdigest()
        sql("UPDATE audit_records SET hash = ? WHERE chain = 'main' AND seq = ?", (digest, seq))


@pytest.fixture
def chain20(build_chain: Chain) -> list[AuditReceipt]:
    return build_chain(20, every=5)


def test_an_untouched_chain_verifies(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey
) -> None:
    report = _main(database, public_key)

    assert report.ok
    assert (report.records, report.checkpoints) == (20, 4)
    assert (report.first_bad_seq, report.problem) == (None, None)


def test_an_empty_log_verifies(database: Database, public_key: Ed25519PublicKey) -> None:
    report = AuditReader(database).verify(public_key)

    assert report.ok
    assert report.chains == []


def test_a_changed_body_field_is_named(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    body = _body(sql, 7)
    body["justification"] = "nothing to see here"
    _write_body(sql, 7, body, rehash=False)

    report = _main(database, public_key)

    assert not report.ok
    assert report.first_bad_seq == 7
    assert "hash does not match" in (report.problem or "")


def test_a_changed_outcome_in_body_and_column_is_named(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    body = _body(sql, 8)
    body["outcome"] = "allow" if body["outcome"] != "allow" else "deny"
    _write_body(sql, 8, body, rehash=False)
    sql("UPDATE audit_records SET outcome = ? WHERE seq = 8", (body["outcome"],))

    report = _main(database, public_key)

    assert report.first_bad_seq == 8


def test_a_changed_and_rehashed_record_at_a_checkpoint_is_named(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    body = _body(sql, 20)
    body["outcome"] = "allow" if body["outcome"] != "allow" else "deny"
    _write_body(sql, 20, body, rehash=True)
    sql("UPDATE audit_records SET outcome = ? WHERE seq = 20", (body["outcome"],))

    report = _main(database, public_key)

    assert report.first_bad_seq == 20
    assert "checkpoint" in (report.problem or "")


def test_a_changed_and_rehashed_record_is_named(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    # Record 7 is rewritten and re-hashed, so it is consistent on its own. Record
    # 8 still commits to 7's original hash, and the checkpoint at 10 vouches for
    # 8, 9 and 10: the record that was changed is provably 7, not 8.
    body = _body(sql, 7)
    body["justification"] = "nothing to see here"
    _write_body(sql, 7, body, rehash=True)

    report = _main(database, public_key)

    assert not report.ok
    assert report.first_bad_seq == 7, report.problem


def test_a_non_canonical_body_is_named(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    body = _body(sql, 4)
    text = orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
    digest = hashlib.sha256(text.encode()).hexdigest()
    sql("UPDATE audit_records SET body = ?, hash = ? WHERE seq = 4", (text, digest))

    report = _main(database, public_key)

    assert report.first_bad_seq == 4
    assert "canonical" in (report.problem or "")


def test_a_body_that_is_not_json_is_named(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    sql("UPDATE audit_records SET body = 'not json' WHERE seq = 3")

    report = _main(database, public_key)

    assert report.first_bad_seq == 3


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("kind", "admin"),
        ("outcome", "error"),
        ("call_id", "call-forged"),
        ("agent", "spiffe://acme.example/agent/other"),
        ("task_id", "task-forged"),
        ("tool", "delete_everything"),
        ("call_id", None),
        ("ts", 1_500_000_000.0),
    ],
)
def test_a_changed_indexed_column_alone_is_named(
    chain20: list[AuditReceipt],
    database: Database,
    public_key: Ed25519PublicKey,
    sql: Sql,
    column: str,
    value: Any,
) -> None:
    before = sql(f"SELECT {column} FROM audit_records WHERE seq = 9")  # noqa: S608
    assert before != [(value,)]
    sql(f"UPDATE audit_records SET {column} = ? WHERE seq = 9", (value,))  # noqa: S608

    report = _main(database, public_key)

    assert not report.ok, f"changing only the {column} column went unnoticed"
    assert report.first_bad_seq == 9
    assert column in (report.problem or "")


def test_the_ts_column_agrees_with_the_body(chain20: list[AuditReceipt], sql: Sql) -> None:
    # What the check above relies on: the column is the body's time, as a number.
    [(ts,)] = sql("SELECT ts FROM audit_records WHERE seq = 9")
    assert isoformat(ts) == _body(sql, 9)["ts"]


def test_a_deleted_middle_record_is_named(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    sql("DELETE FROM audit_records WHERE seq = 12")

    report = _main(database, public_key)

    assert report.first_bad_seq == 12
    assert "missing" in (report.problem or "")


def test_a_deleted_first_record_is_named(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    sql("DELETE FROM audit_records WHERE seq = 1")

    assert _main(database, public_key).first_bad_seq == 1


def test_truncation_under_a_signed_checkpoint_is_named(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    sql("DELETE FROM audit_records WHERE seq >= 18")

    report = _main(database, public_key)

    assert not report.ok
    assert report.first_bad_seq == 18
    assert "missing" in (report.problem or "")
    assert "20" in (report.problem or "")


def test_truncation_of_every_record_is_named(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    sql("DELETE FROM audit_records")

    report = _main(database, public_key)

    assert report.first_bad_seq == 1


def test_two_swapped_records_are_named(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    sql("UPDATE audit_records SET seq = -1 WHERE seq = 13")
    sql("UPDATE audit_records SET seq = 13 WHERE seq = 14")
    sql("UPDATE audit_records SET seq = 14 WHERE seq = -1")

    report = _main(database, public_key)

    assert report.first_bad_seq == 13


def test_swapped_and_renumbered_records_are_named(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    # The swap is disguised: each body is given its new position and re-hashed.
    thirteen, fourteen = _body(sql, 13), _body(sql, 14)
    thirteen["seq"], fourteen["seq"] = 14, 13
    _write_body(sql, 13, fourteen, rehash=True)
    _write_body(sql, 14, thirteen, rehash=True)

    report = _main(database, public_key)

    assert report.first_bad_seq == 13


def test_a_forged_checkpoint_note_is_named(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    [(note,)] = sql("SELECT note FROM audit_checkpoints WHERE seq = 15")
    lines = note.split("\n")
    lines[1] = "16"
    sql("UPDATE audit_checkpoints SET note = ? WHERE seq = 15", ("\n".join(lines),))

    report = _main(database, public_key)

    assert report.first_bad_seq == 15
    assert "checkpoint" in (report.problem or "")


def test_a_checkpoint_row_that_differs_from_its_note_is_named(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    sql("UPDATE audit_checkpoints SET hash = ? WHERE seq = 10", ("ab" * 32,))

    report = _main(database, public_key)

    assert report.first_bad_seq == 10
    assert "checkpoint" in (report.problem or "")


def test_a_checkpoint_with_garbage_signature_is_named(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    [(note,)] = sql("SELECT note FROM audit_checkpoints WHERE seq = 5")
    text, _, signature = note.partition("\n\n")
    dash, name, _blob = signature.strip().split(" ")
    forged = f"{text}\n\n{dash} {name} !!!forged!!!\n"
    sql("UPDATE audit_checkpoints SET note = ? WHERE seq = 5", (forged,))

    report = _main(database, public_key)

    assert report.first_bad_seq == 5
    assert "checkpoint" in (report.problem or "")


def test_a_checkpoint_signed_by_another_key_is_named(
    chain20: list[AuditReceipt],
    database: Database,
    public_key: Ed25519PublicKey,
    sql: Sql,
) -> None:
    impostor = CheckpointSigner(Ed25519PrivateKey.generate())
    head = chain20[11].hash
    sql(
        "INSERT INTO audit_checkpoints (chain, seq, hash, created_at, note) VALUES (?, ?, ?, ?, ?)",
        ("main", 12, head, 0.0, impostor.sign("main", 12, head)),
    )

    report = _main(database, public_key)

    assert report.first_bad_seq == 12
    assert "not signed by key" in (report.problem or "")


def test_a_replaced_signing_key_invalidates_every_checkpoint(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    impostor = CheckpointSigner(Ed25519PrivateKey.generate())
    for seq in (5, 10, 15, 20):
        head = chain20[seq - 1].hash
        sql(
            "UPDATE audit_checkpoints SET note = ? WHERE seq = ?",
            (impostor.sign("main", seq, head), seq),
        )

    # Checked against the real key, the first re-signed checkpoint is named;
    # checked against the impostor's, the (untouched) chain is fine.
    assert _main(database, public_key).first_bad_seq == 5
    assert _main(database, impostor.public_key).ok


def test_without_a_public_key_signatures_are_not_checked_but_links_are(
    chain20: list[AuditReceipt], database: Database, sql: Sql
) -> None:
    sql("UPDATE audit_checkpoints SET note = 'garbage' WHERE seq = 5")
    assert _main(database, None).ok

    sql("DELETE FROM audit_records WHERE seq = 6")
    assert _main(database, None).first_bad_seq == 6


def test_the_earliest_problem_wins(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    sql("DELETE FROM audit_records WHERE seq = 17")
    sql("UPDATE audit_records SET tool = 'forged' WHERE seq = 11")
    sql("UPDATE audit_checkpoints SET hash = ? WHERE seq = 15", ("cd" * 32,))

    assert _main(database, public_key).first_bad_seq == 11


def test_chains_are_reported_separately(
    build_chain: Chain, database: Database, public_key: Ed25519PublicKey, sql: Sql
) -> None:
    build_chain(20, every=5, chain="main")
    build_chain(8, every=3, chain="admin")
    sql("UPDATE audit_records SET tool = 'forged' WHERE chain = 'admin' AND seq = 4")

    reports = _report(database, public_key)

    assert sorted(reports) == ["admin", "main"]
    assert reports["main"].ok
    assert reports["main"].records == 20
    assert not reports["admin"].ok
    assert reports["admin"].first_bad_seq == 4
    assert not AuditReader(database).verify(public_key).ok


def test_verify_chain_reports_records_out_of_order(
    chain20: list[AuditReceipt], database: Database, public_key: Ed25519PublicKey
) -> None:
    records = list(AuditReader(database).records("main"))
    shuffled = [*records[:5], records[6], records[5], *records[7:]]

    report = verify_chain("main", shuffled, [], public_key)

    assert not report.ok
    assert report.first_bad_seq == 6


def test_verify_chain_rejects_a_record_from_another_chain(public_key: Ed25519PublicKey) -> None:
    body = {"v": 1, "chain": "other", "seq": 1, "prev": "0" * 64}
    text = rfc8785.dumps(body).decode()
    record = StoredRecord("main", 1, hashlib.sha256(text.encode()).hexdigest(), text)

    report = verify_chain("main", [record], [], public_key)

    assert report.first_bad_seq == 1
    assert "another chain" in (report.problem or "")


def test_verify_chain_flags_a_checkpoint_for_missing_records(
    public_key: Ed25519PublicKey,
) -> None:
    checkpoint = StoredCheckpoint("main", 3, "ab" * 32, "irrelevant")

    report = verify_chain("main", [], [checkpoint], None)

    assert report.first_bad_seq == 1
    assert report.checkpoints == 1
