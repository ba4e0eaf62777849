"""The database unavailable: every call fails closed with 503, nothing runs unaudited.

The test holds an exclusive SQLite write lock on the gateway's own database
file (as another writer would), with `[store] busy_timeout_ms = 200`, so every
audit append times out.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import (
    GatewayProcess,
    Upstream,
    assert_problem,
    gateway_toml,
    make_client,
    start_gateway,
)

TAG = "locked-store"


@pytest.fixture(scope="module")
def lock_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream
) -> Iterator[GatewayProcess]:
    tools = [
        {
            "name": "echo",
            "url": f"{upstream.url}/echo/{TAG}",
            "risk": "write",
            "input_schema": {"type": "object", "properties": {"msg": {"type": "string"}}},
        },
        {
            "name": "lookup",
            "url": f"{upstream.url}/echo/read-{TAG}",
            "risk": "read",
            "input_schema": {"type": "object"},
        },
    ]
    toml = gateway_toml(tools, store={"busy_timeout_ms": 200})
    with start_gateway(tmp_path_factory.mktemp("locked"), toml) as process:
        yield process


@contextlib.contextmanager
def exclusive_lock(db_path: Path) -> Iterator[None]:
    conn = sqlite3.connect(db_path, timeout=10, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_locked_store_fails_closed_then_recovers(
    lock_gateway: GatewayProcess, upstream: Upstream
) -> None:
    gateway = lock_gateway
    with make_client(gateway.url) as client:
        # Healthy first: the call runs and is recorded.
        ok = client.post("/v1/calls", json={"tool": "echo", "arguments": {"msg": "before"}})
        assert ok.status_code == 200, ok.text
        received_before = len(upstream.received(f"/echo/{TAG}"))
        records_before = gateway.audit_count()

        refused: list[str] = []
        with exclusive_lock(gateway.db_path):
            requests = [
                {"json": {"tool": "echo", "arguments": {"msg": "while locked"}}},
                {"json": {"tool": "no-such-tool", "arguments": {}}},
                {"json": {"tool": "echo", "arguments": {"msg": 5}}},
                {"content": b"{not json", "headers": {"content-type": "application/json"}},
            ]
            for request in requests:
                response = client.post("/v1/calls", **request)
                problem = assert_problem(response, 503)
                # Promptly: the busy timeout is 200 ms.
                assert response.elapsed.total_seconds() < 3
                assert problem["type"] == "urn:ztgate:problem:store-unavailable"
                assert "result" not in problem
                # (`call_id` itself: see test_every_503_names_its_call.)
                refused.append(problem.get("call_id") or problem["instance"])
            # Nothing with side effects reached a tool while the log could not be written.
            assert len(upstream.received(f"/echo/{TAG}")) == received_before
            # A read is recorded once, after its result: it may reach its tool,
            # but its result is withheld when it cannot be recorded.
            read = client.post("/v1/calls", json={"tool": "lookup", "arguments": {"q": "x"}})
            problem = assert_problem(read, 503)
            assert "result" not in problem and '"q"' not in read.text
            refused.append(problem.get("call_id") or problem["instance"])

        # Nothing about the refused calls was recorded, least of all an allow.
        assert gateway.audit_count() == records_before
        for call_id in refused:
            assert gateway.audit_records(call_id) == []

        # Released: calls work again, and the chain is intact.
        again = client.post("/v1/calls", json={"tool": "echo", "arguments": {"msg": "after"}})
        assert again.status_code == 200, again.text
        assert again.json()["result"] == {"echo": {"msg": "after"}}
        records = gateway.audit_records(again.json()["call_id"])
        assert [(r["kind"], r["outcome"]) for r in records] == [
            ("decision", "allow"),
            ("result", "allow"),
        ]
        denied = client.post("/v1/calls", json={"tool": "no-such-tool"})
        assert_problem(denied, 403)
        assert len(upstream.received(f"/echo/{TAG}")) == received_before + 1
    gateway.verify_audit()


def test_readiness_and_metrics_while_locked(lock_gateway: GatewayProcess) -> None:
    gateway = lock_gateway
    with make_client(gateway.url) as client:
        with exclusive_lock(gateway.db_path):
            response = client.post("/v1/calls", json={"tool": "echo", "arguments": {}})
            assert_problem(response, 503)
            # Liveness does not depend on the store.
            assert client.get("/healthz").status_code == 200
        metrics = client.get("/metrics").text
        failures = [
            line for line in metrics.splitlines() if line.startswith("ztgate_audit_failures_total")
        ]
        assert failures
        assert float(failures[0].split()[-1]) >= 1
        assert client.get("/readyz").status_code == 200


def test_every_503_names_its_call(lock_gateway: GatewayProcess) -> None:
    # Every problem from POST /v1/calls carries the call_id the agent quotes in
    # support requests; a body refused while the store is down is no exception.
    with make_client(lock_gateway.url) as client, exclusive_lock(lock_gateway.db_path):
        for request in (
            {"json": {"tool": "echo", "arguments": {}}},
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
        ):
            problem = assert_problem(client.post("/v1/calls", **request), 503)
            assert problem.get("call_id"), problem
