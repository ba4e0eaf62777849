"""One audit record: canonical body, its hash, omitted absent fields, the prev link."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.audit.log import AuditLog
from ztgate.audit.reader import AuditReader
from ztgate.audit.record import (
    FORMAT_VERSION,
    GENESIS,
    AuditEntry,
    AuditReceipt,
    build_body,
    seal,
    seal_entry,
)
from ztgate.clock import isoformat
from ztgate.errors import InvalidInputError

TS = 1_800_000_000.123456
TS_TEXT = "2027-01-15T08:00:00.123456Z"
REQUIRED = {"v", "chain", "seq", "prev", "ts", "kind", "outcome"}


def _body(entry: AuditEntry, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"chain": "main", "seq": 3, "prev": "ab" * 32, "ts": TS}
    options.update(overrides)
    return build_body(entry, **options)


def test_minimal_entry_has_only_the_required_fields() -> None:
    body = _body(AuditEntry(kind="call", outcome="deny"))

    assert body == {
        "v": FORMAT_VERSION,
        "chain": "main",
        "seq": 3,
        "prev": "ab" * 32,
        "ts": TS_TEXT,
        "kind": "call",
        "outcome": "deny",
    }


def test_every_present_field_is_recorded(make_entry: Callable[..., AuditEntry]) -> None:
    entry = make_entry(7)

    body = _body(entry)

    assert set(body) == REQUIRED | {
        "call_id",
        "agent",
        "task_id",
        "tool",
        "status",
        "reasons",
        "arguments_sha256",
        "arguments_preview",
        "justification",
        "detail",
    }
    assert body["call_id"] == "call-7"
    assert body["tool"] == entry.tool
    assert body["reasons"] == [{"check": "schema", "outcome": "allow", "reason": "ok"}]
    assert body["detail"] == {"i": 7}


@pytest.mark.parametrize(
    "field",
    [
        "call_id",
        "agent",
        "task_id",
        "tool",
        "status",
        "arguments_sha256",
        "arguments_preview",
        "justification",
    ],
)
def test_an_absent_field_is_left_out_not_null(
    field: str, make_entry: Callable[..., AuditEntry]
) -> None:
    body = _body(make_entry(1, **{field: None}))

    assert field not in body
    assert "null" not in seal(body)[0]


def test_empty_reasons_and_detail_are_left_out() -> None:
    body = _body(AuditEntry(kind="call", outcome="allow", reasons=(), detail={}))

    assert "reasons" not in body
    assert "detail" not in body


def test_falsy_but_present_values_are_kept() -> None:
    body = _body(AuditEntry(kind="call", outcome="allow", status=0, justification=""))

    assert body["status"] == 0
    assert body["justification"] == ""


def test_body_is_rfc8785_canonical_and_hash_is_its_sha256() -> None:
    entry = AuditEntry(
        kind="call",
        outcome="allow",
        tool="send_email",
        justification='caf\u00e9 \U0001f600 \u2028 \x00\x1f\x7f "q" \\ </script>',
        detail={
            "z": 1,
            "a": [1.0, 0.1, 1e21, -0.0, 3.5e-7, True, None],
            "\u00e9": "accent",
            "\U0001f600": "astral",
            "\uffff": "bmp",
            "B": {"y": 2, "x": 1},
        },
    )

    text, digest = seal(_body(entry))

    assert text.encode() == rfc8785.dumps(json.loads(text))
    assert digest == hashlib.sha256(text.encode()).hexdigest()
    assert json.loads(text) == json.loads(json.dumps(_body(entry)))


def test_key_order_and_number_spelling_do_not_change_the_hash() -> None:
    one = AuditEntry(kind="call", outcome="allow", detail={"a": 1, "b": 2.50})
    two = AuditEntry(kind="call", outcome="allow", detail={"b": 2.5, "a": 1})

    assert seal(_body(one)) == seal(_body(two))


def test_any_change_changes_the_hash(make_entry: Callable[..., AuditEntry]) -> None:
    base = seal(_body(make_entry(1)))[1]

    assert seal(_body(make_entry(1), seq=4))[1] != base
    assert seal(_body(make_entry(1), prev=GENESIS))[1] != base
    assert seal(_body(make_entry(1), chain="other"))[1] != base
    assert seal(_body(make_entry(1), ts=TS + 0.000001))[1] != base
    assert make_entry(1).outcome != "allow"
    assert seal(_body(make_entry(1, outcome="allow")))[1] != base
    assert seal(_body(make_entry(1, detail={"i": 2})))[1] != base


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(detail=st.dictionaries(st.text(max_size=8), _json, max_size=5), text=st.text(max_size=30))
def test_seal_matches_the_rfc8785_reference(detail: dict[str, Any], text: str) -> None:
    body = _body(AuditEntry(kind="call", outcome="allow", justification=text, detail=detail))

    sealed, digest = seal(body)

    assert sealed.encode() == rfc8785.dumps(body)
    assert digest == hashlib.sha256(rfc8785.dumps(body)).hexdigest()


_texts = st.text(max_size=8)  # any code points, lone surrogates included
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_texts, children, max_size=3),
    max_leaves=8,
)
_entries = st.builds(
    AuditEntry,
    kind=_texts | st.none() | st.integers(),
    outcome=_texts | st.floats(),
    call_id=st.none() | _texts,
    agent=st.none() | _texts | st.integers(),
    task_id=st.none() | _texts,
    tool=st.none() | _texts,
    status=st.none() | st.integers() | st.floats(),
    reasons=st.lists(st.dictionaries(_texts, _values, max_size=3), max_size=3),
    arguments_sha256=st.none() | _texts,
    arguments_preview=st.none() | _texts,
    justification=st.none() | _texts,
    detail=st.dictionaries(_texts, _values, max_size=3),
)


def _seal_or_error(seal_it: Callable[[], tuple[str, str]]) -> tuple[str, str] | str:
    try:
        return seal_it()
    except InvalidInputError:
        return "no canonical form"


@settings(max_examples=300, deadline=None)
@given(entry=_entries, seq=st.integers(0, 2**63), ts=st.floats(0, 4e9))
def test_seal_entry_is_seal_of_build_body(entry: AuditEntry, seq: int, ts: float) -> None:
    """The log's shortcut (field names not re-checked, time formatted once) changes no byte.

    Values of every kind (floats, huge integers, non-ASCII and lone-surrogate
    keys and strings, wrong types) in every field, required ones included.
    """
    options: dict[str, Any] = {"chain": "main", "seq": seq, "prev": "ab" * 32}

    slow = _seal_or_error(lambda: seal(build_body(entry, ts=ts, **options)))
    fast = _seal_or_error(lambda: seal_entry(entry, ts=isoformat(ts), **options))

    assert fast == slow


@pytest.mark.parametrize(
    "changes",
    [
        {"detail": {"x": 0.1}},
        {"detail": {"é": 1}},
        {"reasons": [{"\U0001f600": "a", "\uffff": "b"}]},
        {"status": 2**60},
        {"outcome": 1.5},
        {"kind": None},
    ],
    ids=repr,
)
def test_seal_entry_checks_values_as_seal_does(
    make_entry: Callable[..., AuditEntry], changes: dict[str, Any]
) -> None:
    entry = make_entry(1, **changes)
    options: dict[str, Any] = {"chain": "main", "seq": 3, "prev": "ab" * 32}

    sealed = seal_entry(entry, ts=TS_TEXT, **options)

    assert sealed == seal(build_body(entry, ts=TS, **options))


def test_seal_entry_refuses_what_seal_refuses(make_entry: Callable[..., AuditEntry]) -> None:
    entry = make_entry(1, detail={"n": float("nan")})

    with pytest.raises(InvalidInputError):
        seal_entry(entry, chain="main", seq=3, prev="ab" * 32, ts=TS_TEXT)


def test_records_link_to_the_previous_record(
    make_log: Callable[..., AuditLog],
    make_entry: Callable[..., AuditEntry],
    database: Any,
) -> None:
    log = make_log(signer=None)
    receipts: list[AuditReceipt] = []
    for i in range(1, 5):
        receipts += log.append_now([make_entry(i)])

    records = list(AuditReader(database).records("main"))

    assert [r.seq for r in records] == [1, 2, 3, 4]
    prevs = [orjson.loads(r.body)["prev"] for r in records]
    assert prevs == [GENESIS, receipts[0].hash, receipts[1].hash, receipts[2].hash]
    for record, receipt in zip(records, receipts, strict=True):
        assert record.hash == receipt.hash == hashlib.sha256(record.body.encode()).hexdigest()
        assert record.body.encode() == rfc8785.dumps(json.loads(record.body))
