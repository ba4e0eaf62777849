"""Bad requests at the HTTP edge: the right RFC 9457 problem, one audit record, nothing else.

Each case checks three things: the answer (status, problem+json, type, title,
detail, call_id), the audit record written for it (same call id, outcome
deny, same status), and that nothing else happened: exactly one new audit
record, no call reached the tool server, the tool registry is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from .harness import (
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    GatewayProcess,
    Upstream,
    assert_problem,
)

JSON = {"content-type": "application/json"}


def _nested(levels: int) -> bytes:
    """A call whose document nests `levels` containers deep (the body object is level 1)."""
    lists = levels - 2  # the body object and `arguments` are two levels
    return b'{"tool":"echo","arguments":{"d":' + b"[" * lists + b"]" * lists + b"}}"


def _padded(size: int) -> bytes:
    """A valid call of the `sink` tool exactly `size` bytes long."""
    head, tail = b'{"tool":"sink","arguments":{"pad":"', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def _chunks(total: int, size: int = 8192) -> Callable[[], Iterator[bytes]]:
    def generate() -> Iterator[bytes]:
        body = _padded(total)
        for start in range(0, len(body), size):
            yield body[start : start + size]

    return generate


@dataclass(frozen=True)
class Case:
    """One bad request and what the gateway must answer."""

    body: bytes | None = None
    status: int = 400
    slug: str = ""
    detail: str = ""
    kind: str = "rejected"
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    stream: Callable[[], Iterator[bytes]] | None = None

    def send(self, client: httpx.Client) -> httpx.Response:
        content: Any = self.stream() if self.stream is not None else self.body
        return client.post("/v1/calls", content=content, headers=self.headers)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


CASES = {
    "malformed-json": Case(b'{"tool": "echo", "arguments": {', 400, "malformed-json", "not valid"),
    "empty-body": Case(b"", 400, "malformed-json", "not valid"),
    "trailing-garbage": Case(b'{"tool":"echo"} x', 400, "malformed-json", "not valid"),
    "tool-as-number": Case(_json({"tool": 42, "arguments": {}}), 422, "invalid-request", "tool"),
    "tool-empty": Case(_json({"tool": "", "arguments": {}}), 422, "invalid-request", "tool"),
    "arguments-as-list": Case(
        _json({"tool": "echo", "arguments": [1, 2]}), 422, "invalid-request", "arguments"
    ),
    "arguments-as-string": Case(
        _json({"tool": "echo", "arguments": "{}"}), 422, "invalid-request", "arguments"
    ),
    "justification-as-number": Case(
        _json({"tool": "echo", "justification": 7}), 422, "invalid-request", "justification"
    ),
    "body-is-a-list": Case(_json([{"tool": "echo"}]), 422, "invalid-request", "JSON object"),
    "missing-tool": Case(_json({"arguments": {}}), 422, "invalid-request", "tool"),
    "unknown-field": Case(
        _json({"tool": "echo", "arguments": {}, "sudo": True}),
        422,
        "invalid-request",
        "1 unknown field in the body",
    ),
    "schema-wrong-type": Case(
        _json({"tool": "echo", "arguments": {"opts": {"count": "three"}}}),
        403,
        "call-denied",
        "at /opts/count: violates type 'integer'",
        kind="decision",
    ),
    "schema-over-maximum": Case(
        _json({"tool": "echo", "arguments": {"opts": {"count": 11}}}),
        403,
        "call-denied",
        "at /opts/count: violates maximum 10",
        kind="decision",
    ),
    "unknown-tool": Case(
        _json({"tool": "delete_everything", "arguments": {}}),
        403,
        "call-denied",
        "unknown tool 'delete_everything'",
        kind="decision",
    ),
    "oversized-content-length": Case(
        _padded(MAX_BODY_BYTES + 1), 413, "body-too-large", f"larger than {MAX_BODY_BYTES}"
    ),
    "oversized-chunked": Case(
        None,
        413,
        "body-too-large",
        f"larger than {MAX_BODY_BYTES}",
        stream=_chunks(2 * MAX_BODY_BYTES),
    ),
    "non-utf8": Case(b'{"tool":"echo","arguments":{"msg":"\xff\xfe"}}', 400, "malformed-json", ""),
    "lone-surrogate": Case(
        b'{"tool":"echo","arguments":{"msg":"\\ud800"}}', 400, "malformed-json", ""
    ),
    "too-deep": Case(
        _nested(MAX_JSON_DEPTH + 1), 400, "json-too-deep", f"deeper than {MAX_JSON_DEPTH}"
    ),
    "wrong-content-type": Case(
        _json({"tool": "echo"}),
        415,
        "unsupported-media-type",
        "",
        headers={"content-type": "text/plain"},
    ),
    "form-content-type": Case(
        b"tool=echo",
        415,
        "unsupported-media-type",
        "",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    "latin1-charset": Case(
        _json({"tool": "echo"}),
        415,
        "unsupported-media-type",
        "UTF-8",
        headers={"content-type": "application/json; charset=latin-1"},
    ),
    "number-overflows-double": Case(
        b'{"tool":"echo","arguments":{"n":1e400}}', 400, "malformed-json", ""
    ),
    "negative-number-overflows-double": Case(
        b'{"tool":"echo","arguments":{"n":-1e400}}', 400, "malformed-json", ""
    ),
    "nan-literal": Case(b'{"tool":"echo","arguments":{"n":NaN}}', 400, "malformed-json", ""),
    # No exact IEEE 754 double: refused rather than silently rounded (I-JSON, RFC 7493).
    "integer-beyond-safe-range": Case(
        b'{"tool":"echo","arguments":{"n":9007199254740993}}', 400, "", ""
    ),
    "integer-beyond-64-bits": Case(
        b'{"tool":"echo","arguments":{"n":123456789012345678901234567890}}', 400, "", ""
    ),
}


@pytest.fixture
def snapshot(gateway: GatewayProcess, upstream: Upstream) -> Callable[[], tuple[Any, ...]]:
    def take() -> tuple[Any, ...]:
        return len(upstream.received()), gateway.tool_rows()

    return take


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_request_is_refused_audited_and_changes_nothing(
    name: str,
    client: httpx.Client,
    gateway: GatewayProcess,
    snapshot: Callable[[], tuple[Any, ...]],
) -> None:
    case = CASES[name]
    before_records = gateway.audit_count()
    before = snapshot()

    response = case.send(client)
    if case.stream is not None:
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.request.headers

    problem = assert_problem(response, case.status)
    if case.slug:
        assert problem["type"] == f"urn:ztgate:problem:{case.slug}", problem
    assert case.detail in problem["detail"], problem
    call_id = problem["call_id"]
    assert isinstance(call_id, str)
    assert call_id
    assert problem.get("instance") in (None, call_id)
    assert "result" not in problem

    records = gateway.audit_records(call_id)
    assert len(records) == 1, records
    [record] = records
    assert record["kind"] == case.kind
    assert record["outcome"] == "deny"
    assert record["status"] == case.status
    assert any(case.detail in r["reason"] for r in record["reasons"]), record

    assert gateway.audit_count() == before_records + 1
    assert snapshot() == before, "a refused request changed something"


def test_body_exactly_at_the_size_limit_is_accepted(client: httpx.Client) -> None:
    body = _padded(MAX_BODY_BYTES)
    assert len(body) == MAX_BODY_BYTES
    response = client.post("/v1/calls", content=body, headers=JSON)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["result"]["bytes"] > MAX_BODY_BYTES - 100


def test_chunked_body_under_the_limit_is_accepted(client: httpx.Client) -> None:
    response = client.post("/v1/calls", content=_chunks(MAX_BODY_BYTES // 2)(), headers=JSON)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["result"]["bytes"] > MAX_BODY_BYTES // 2 - 100


def test_nesting_exactly_at_the_depth_limit_is_accepted(client: httpx.Client) -> None:
    response = client.post("/v1/calls", content=_nested(MAX_JSON_DEPTH), headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "allow"


def test_json_content_type_with_utf8_charset_is_accepted(client: httpx.Client) -> None:
    response = client.post(
        "/v1/calls",
        content=_json({"tool": "echo", "arguments": {"msg": "grüße"}}),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {"echo": {"msg": "grüße"}}
