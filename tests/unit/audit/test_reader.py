"""Reading the audit log back: records, tails, and JSON Lines exports a third party can verify."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ztgate.audit import reader as reader_module
from ztgate.audit.checkpoint import CheckpointSigner, public_pem
from ztgate.audit.log import AuditLog
from ztgate.audit.reader import EXPORT_FORMAT, AuditReader, verify_export
from ztgate.audit.record import AuditEntry, AuditReceipt
from ztgate.errors import InvalidInputError
from ztgate.store.database import Database
from ztgate.testing import FrozenClock

Chain = Callable[..., list[AuditReceipt]]


def _export(database: Database, path: Path, public_key: Ed25519PublicKey | None) -> int:
    with path.open("w", encoding="utf-8") as handle:
        return AuditReader(database).export_jsonl(handle, public_key)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _write_lines(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))


@pytest.fixture
def exported(
    build_chain: Chain, database: Database, public_key: Ed25519PublicKey, tmp_path: Path
) -> Path:
    build_chain(12, every=5, chain="main")
    build_chain(4, every=2, chain="admin")
    path = tmp_path / "audit.jsonl"
    assert _export(database, path, public_key) == 16
    return path


# -- records and chains -----------------------------------------------------------


def test_chains_lists_every_chain(build_chain: Chain, database: Database) -> None:
    build_chain(2, chain="zeta")
    build_chain(2, chain="alpha")

    assert AuditReader(database).chains() == ["alpha", "zeta"]


def test_records_are_read_in_order_across_pages(
    build_chain: Chain, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    receipts = build_chain(11, every=100)
    monkeypatch.setattr(reader_module, "_PAGE", 3)

    records = list(AuditReader(database).records("main"))
    after = list(AuditReader(database).records("main", after=9))

    assert [r.seq for r in records] == list(range(1, 12))
    assert [r.hash for r in records] == [r.hash for r in receipts]
    assert [r.seq for r in after] == [10, 11]


# -- tail -----------------------------------------------------------------------------


def test_tail_returns_the_newest_records_oldest_first(
    build_chain: Chain, database: Database
) -> None:
    build_chain(10, every=100)

    tail = AuditReader(database).tail(3)

    assert [r["seq"] for r in tail] == [8, 9, 10]
    assert [r["call_id"] for r in tail] == ["call-8", "call-9", "call-10"]


def test_tail_orders_records_of_one_transaction_by_sequence(
    make_log: Callable[..., AuditLog], make_entry: Callable[..., AuditEntry], database: Database
) -> None:
    make_log(signer=None).append_now([make_entry(i) for i in range(1, 6)])

    assert [r["seq"] for r in AuditReader(database).tail(4)] == [2, 3, 4, 5]


def test_tail_interleaves_chains_by_time_and_filters_one(
    make_log: Callable[..., AuditLog],
    make_entry: Callable[..., AuditEntry],
    database: Database,
    clock: FrozenClock,
) -> None:
    main, admin = make_log(signer=None), make_log(signer=None, chain="admin")
    for i in range(1, 4):
        clock.advance(1)
        main.append_now([make_entry(i)])
        clock.advance(1)
        admin.append_now([make_entry(100 + i)])

    both = AuditReader(database).tail(4)
    only_main = AuditReader(database).tail(10, chain="main")

    assert [(r["chain"], r["seq"]) for r in both] == [
        ("main", 2),
        ("admin", 2),
        ("main", 3),
        ("admin", 3),
    ]
    assert [r["seq"] for r in only_main] == [1, 2, 3]
    assert {r["chain"] for r in only_main} == {"main"}


def test_tail_of_an_empty_log_is_empty(database: Database) -> None:
    assert AuditReader(database).tail(5) == []


# -- export and verify_export --------------------------------------------------------


def test_export_round_trips_and_verifies(exported: Path, public_key: Ed25519PublicKey) -> None:
    report = verify_export(exported, public_key)

    assert report.ok
    summary = {c.chain: (c.records, c.checkpoints) for c in report.chains}
    assert summary == {"admin": (4, 2), "main": (12, 2)}


def test_export_starts_with_a_header_naming_the_format_and_key(
    exported: Path, public_key: Ed25519PublicKey
) -> None:
    header, *rest = _lines(exported)

    assert header["type"] == "header"
    assert header["format"] == EXPORT_FORMAT
    assert header["public_key_pem"] == public_pem(public_key).decode()
    assert {line["type"] for line in rest} == {"record", "checkpoint"}
    records = [line for line in rest if line["type"] == "record" and line["chain"] == "main"]
    assert [line["record"]["seq"] for line in records] == list(range(1, 13))
    assert all(line["seq"] == line["record"]["seq"] for line in records)


def test_export_without_a_key_has_no_key_in_its_header(
    build_chain: Chain, database: Database, tmp_path: Path
) -> None:
    build_chain(3)
    path = tmp_path / "audit.jsonl"
    _export(database, path, None)

    assert "public_key_pem" not in _lines(path)[0]
    assert verify_export(path, None).ok


def test_export_to_a_text_stream_counts_records(build_chain: Chain, database: Database) -> None:
    build_chain(3, every=100)
    out = io.StringIO()

    assert AuditReader(database).export_jsonl(out, None) == 3
    assert len(out.getvalue().splitlines()) == 4


def _tamper(path: Path, chain: str, seq: int, change: Callable[[dict[str, Any]], None]) -> None:
    lines = _lines(path)
    for line in lines:
        if line["type"] == "record" and line["chain"] == chain and line["seq"] == seq:
            change(line)
    _write_lines(path, lines)


def _report_for(path: Path, public_key: Ed25519PublicKey | None, chain: str) -> Any:
    report = verify_export(path, public_key)
    return {c.chain: c for c in report.chains}[chain]


def test_a_tampered_record_line_is_named(exported: Path, public_key: Ed25519PublicKey) -> None:
    _tamper(exported, "main", 7, lambda line: line["record"].update(outcome="allow"))

    report = verify_export(exported, public_key)

    assert not report.ok
    chains = {c.chain: c for c in report.chains}
    assert chains["main"].first_bad_seq == 7
    assert chains["admin"].ok


def test_a_reformatted_but_equal_record_still_verifies(
    exported: Path, public_key: Ed25519PublicKey
) -> None:
    # Exports are re-canonicalised: key order and spacing in the file do not matter.
    text = exported.read_text(encoding="utf-8").splitlines()
    pretty = [orjson.dumps(orjson.loads(line), option=orjson.OPT_INDENT_2) for line in text]
    exported.write_bytes(b"\n".join(p.replace(b"\n", b" ") for p in pretty) + b"\n")

    assert verify_export(exported, public_key).ok


def test_a_removed_record_line_is_named(exported: Path, public_key: Ed25519PublicKey) -> None:
    lines = [
        line
        for line in _lines(exported)
        if not (line["type"] == "record" and line["chain"] == "main" and line["seq"] == 4)
    ]
    _write_lines(exported, lines)

    assert _report_for(exported, public_key, "main").first_bad_seq == 4


def test_truncating_an_export_under_a_checkpoint_is_named(
    exported: Path, public_key: Ed25519PublicKey
) -> None:
    lines = [
        line
        for line in _lines(exported)
        if not (line["type"] == "record" and line["chain"] == "main" and line["seq"] >= 9)
    ]
    _write_lines(exported, lines)

    assert _report_for(exported, public_key, "main").first_bad_seq == 9


def test_an_export_checked_with_another_key_fails(exported: Path) -> None:
    stranger = Ed25519PrivateKey.generate().public_key()

    report = verify_export(exported, stranger)

    assert not report.ok
    assert {c.chain: c.first_bad_seq for c in report.chains} == {"admin": 2, "main": 5}


def test_the_key_in_the_header_is_not_trusted(exported: Path, public_key: Ed25519PublicKey) -> None:
    # Re-signing every checkpoint with another key and naming that key in the
    # header cannot pass: the verifier uses the key it was given.
    impostor = CheckpointSigner(Ed25519PrivateKey.generate())
    lines = _lines(exported)
    lines[0]["public_key_pem"] = public_pem(impostor.public_key).decode()
    for line in lines:
        if line["type"] == "checkpoint":
            line["note"] = impostor.sign(line["chain"], line["seq"], line["hash"])
    _write_lines(exported, lines)

    assert verify_export(exported, impostor.public_key).ok
    assert not verify_export(exported, public_key).ok


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b"hello, world\n", 1),
        (b"[1, 2, 3]\n", 1),
        (b'"just a string"\n', 1),
        (b'{"no": "type"}\n', 1),
        (b'{"type": "header", "format": "something-else/9"}\n', 1),
        (b'{"type": "header", "format": "ztgate-audit/1"}\n\n{"type": "record"}\n', 3),
        (
            b'{"type": "header", "format": "ztgate-audit/1"}\n'
            b'{"type": "record", "chain": "main", "seq": "x", "hash": "", "record": {}}\n',
            2,
        ),
        (
            b'{"type": "header", "format": "ztgate-audit/1"}\n'
            b'{"type": "checkpoint", "chain": "main", "seq": 1}\n',
            2,
        ),
    ],
)
def test_a_file_that_is_not_an_export_names_the_line(
    tmp_path: Path, content: bytes, line: int
) -> None:
    path = tmp_path / "not-an-export.jsonl"
    path.write_bytes(content)

    with pytest.raises(InvalidInputError, match=f"{path.name}:{line}:"):
        verify_export(path, None)


def test_json_lines_of_another_kind_are_not_an_export(tmp_path: Path) -> None:
    # Any JSON Lines log whose objects carry a "type" (and no export header)
    # must not pass as a verified, empty audit log.
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"type": "event", "name": "login"}\n{"type": "event", "name": "logout"}\n')

    with pytest.raises(InvalidInputError, match=f"{path.name}:1:"):
        verify_export(path, None)


def test_a_record_without_canonical_form_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(
        b'{"type": "header", "format": "ztgate-audit/1"}\n'
        b'{"type": "record", "chain": "main", "seq": 1, "hash": "00",'
        b' "record": {"n": 9007199254740993}}\n'
    )

    with pytest.raises(InvalidInputError, match=f"{path.name}:2:"):
        verify_export(path, None)
