"""Health, readiness, metrics, OpenAPI, unknown paths; and no traceback ever reaches a client."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .harness import (
    PROBLEM_JSON,
    TRACEBACK_SIGNS,
    GatewayProcess,
    assert_problem,
)


def _scrape(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz(client: httpx.Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_metrics_count_decisions_by_outcome_and_check(client: httpx.Client) -> None:
    before = _scrape(client)

    assert client.post("/v1/calls", json={"tool": "echo", "arguments": {}}).status_code == 200
    denied = client.post("/v1/calls", json={"tool": "echo", "arguments": {"opts": {"count": "x"}}})
    assert denied.status_code == 403
    assert client.post("/v1/calls", json={"tool": "nope"}).status_code == 403
    malformed = client.post("/v1/calls", content=b"{", headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    assert client.post("/v1/calls", json={"tool": "failing"}).status_code == 502
    withheld = client.post("/v1/calls", json={"tool": "shaped", "arguments": {"leak": True}})
    assert withheld.status_code == 502

    after = _scrape(client)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    decisions = "ztgate_decisions_total"
    # echo, failing and shaped ran; only echo's result was allowed, shaped's was withheld.
    assert delta(decisions, phase="call", outcome="allow", check="all") == 3
    assert delta(decisions, phase="call", outcome="deny", check="schema") == 2
    assert delta(decisions, phase="result", outcome="allow", check="all") == 1
    assert delta(decisions, phase="result", outcome="deny", check="result_schema") == 1
    assert delta("ztgate_rejected_requests_total", reason="malformed-json") == 1
    assert delta("ztgate_upstream_errors_total", kind="upstream-failed") == 1
    assert delta("ztgate_call_seconds_count", outcome="allow") == 1
    assert delta("ztgate_call_seconds_count", outcome="deny") == 4
    assert delta("ztgate_decision_seconds_count") == 5


def test_openapi_describes_the_calls_endpoint(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.")
    post = spec["paths"]["/v1/calls"]["post"]
    body = post["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"tool", "arguments", "justification"}
    assert schema["required"] == ["tool"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["tool"]["type"] == "string"
    assert schema["properties"]["arguments"]["type"] == "object"
    for status in ("200", "400", "403", "413", "415", "422", "502", "503", "504"):
        assert status in post["responses"], status
    problem_ref = post["responses"]["403"]["content"][PROBLEM_JSON]["schema"]["$ref"]
    assert problem_ref == "#/components/schemas/Problem"
    assert set(spec["components"]["schemas"]["Problem"]["required"]) == {
        "type",
        "title",
        "status",
        "detail",
    }
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "get" in spec["paths"][path]


def test_unknown_path_is_404_problem(client: httpx.Client) -> None:
    problem = assert_problem(client.get("/v1/nothing-here"), 404)
    assert problem["detail"] == "Not Found"
    assert_problem(client.post("/v2/calls", json={"tool": "echo"}), 404)


def test_wrong_method_is_405_problem_with_allow_header(client: httpx.Client) -> None:
    response = client.get("/v1/calls")
    assert_problem(response, 405)
    # RFC 9110 section 15.5.6: a 405 response MUST carry an Allow header.
    assert "POST" in response.headers.get("allow", "")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/calls"),
        ("DELETE", "/v1/calls"),
        ("PUT", "/healthz"),
        ("GET", "/../../etc/passwd"),
        ("GET", "/v1/calls/%ff%fe"),
        ("GET", "/%00"),
        ("POST", "/metrics"),
        ("GET", "/docs/../openapi.json?x=%zz"),
    ],
)
def test_odd_requests_get_a_problem_without_traceback(
    client: httpx.Client, method: str, path: str
) -> None:
    response = client.request(method, path)
    # The client's response hook already fails on any traceback; errors must be problems.
    if response.status_code >= 400:
        assert response.headers["content-type"] == PROBLEM_JSON, response.text


def _raw(gateway: GatewayProcess, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NONSENSE\r\n\r\n",
        b"POST /v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 40\r\nConnection: close\r\n\r\n{"tool":',
        b"POST /v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: -1\r\nConnection: close\r\n\r\n{}",
        b"POST /v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    ],
    ids=["bad-request-line", "cl-and-te", "truncated-body", "negative-length", "bad-chunk"],
)
def test_malformed_http_never_yields_a_traceback(
    gateway: GatewayProcess, client: httpx.Client, request_bytes: bytes
) -> None:
    answer = _raw(gateway, request_bytes)
    for sign in TRACEBACK_SIGNS:
        assert sign.encode() not in answer, answer[:500]
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:500]
    assert not answer.startswith(b"HTTP/1.1 5"), answer[:500]
    # And the gateway is still serving.
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 40\r\nConnection: close\r\n\r\n{"tool":',
        b"POST /v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    ],
    ids=["truncated-body", "bad-chunk"],
)
def test_client_leaving_mid_body_is_not_an_internal_error(
    gateway: GatewayProcess, client: httpx.Client, request_bytes: bytes
) -> None:
    # A client that hangs up while sending its body is routine, not a crash of
    # the gateway: it must not be logged as an unhandled error with a traceback.
    log_before = gateway.log_path.stat().st_size
    _raw(gateway, request_bytes)
    time.sleep(0.3)
    assert client.get("/healthz").status_code == 200
    with gateway.log_path.open("rb") as log:
        log.seek(log_before)
        new_lines = log.read().decode(errors="replace")
    assert "unhandled error" not in new_lines, new_lines[-3000:]
    assert "Traceback" not in new_lines, new_lines[-3000:]
