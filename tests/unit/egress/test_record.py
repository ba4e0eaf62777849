"""The audit entries of egress connections: attribution, destination, bytes; no credentials."""

from __future__ import annotations

import ipaddress

from ztgate.egress.decision import Attribution
from ztgate.egress.record import ConnectionFacts, RefusalRecords, egress_entry
from ztgate.egress.request import Authority

FACTS = ConnectionFacts(
    "c1",
    Attribution("files", "spiffe://d/agent/a", "t1"),
    "unix",
    "CONNECT",
    Authority("api.example.com", 443),
    ipaddress.ip_address("93.184.215.14"),
)


def test_a_close_entry_has_everything() -> None:
    entry = egress_entry(
        FACTS, outcome="allow", event="close", reason="closed", up=1, down=2, seconds=0.0125
    )
    assert entry.kind == "egress" and entry.outcome == "allow"
    assert entry.agent == "spiffe://d/agent/a" and entry.task_id == "t1"
    assert entry.reasons == ({"check": "egress-proxy", "reason": "closed"},)
    assert dict(entry.detail) == {
        "event": "close",
        "connection": "c1",
        "listener": "unix",
        "reason": "closed",
        "enclave": "files",
        "method": "CONNECT",
        "host": "api.example.com",
        "port": 443,
        "address": "93.184.215.14",
        "bytes_up": 1,
        "bytes_down": 2,
        "duration_ms": 12.5,
    }


def test_an_early_refusal_has_what_is_known() -> None:
    entry = egress_entry(
        ConnectionFacts("c2", None, "tcp"), outcome="deny", event="deny", reason="bad", status=400
    )
    assert entry.agent is None and entry.status == 400
    assert dict(entry.detail) == {
        "event": "deny",
        "connection": "c2",
        "listener": "tcp",
        "reason": "bad",
    }


def test_refusal_records_are_a_token_bucket_per_key() -> None:
    records = RefusalRecords(per_second=2)  # bursts of 4
    assert [records.take("a", 0.0) for _ in range(5)] == [0, 0, 0, 0, None]
    assert records.take("a", 0.1) is None
    assert records.take("b", 0.1) == 0  # another enclave: its own bucket
    assert records.take("a", 0.5) == 2  # one token back: two went unrecorded before it
    assert records.take("a", 0.5) is None
    records.forget("a")
    assert records.take("a", 0.5) == 0


def test_refusal_buckets_are_bounded() -> None:
    records = RefusalRecords(per_second=1, max_keys=2)  # bursts of 2
    assert [records.take("a", 0.0), records.take("a", 0.0), records.take("a", 0.0)] == [0, 0, None]
    records.take("b", 0.0)
    records.take("c", 0.0)  # "a" is the least recently used: dropped
    assert records.take("a", 0.0) == 0  # a full bucket again
