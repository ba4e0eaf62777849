"""Two gateway processes on one PostgreSQL store: one audit chain, failing closed through a restart.

Both replicas serve the same directory (one CA, one audit key) with
`[store] url` naming this module's own PostgreSQL cluster. Their records go
into one hash chain that `ztgate audit verify` passes. PostgreSQL is
restarted under load from two clients: while it is down every call is
refused (503, the store's fault; nothing reaches a tool unrecorded), calls
work again once it is back, and every call answered 200 has its records in
the chain. A replica killed under load leaves no answered call unrecorded,
and a tool added with the CLI is callable on both from the next call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from ztgate.store.database import Database
from ztgate.store.postgres_server import PostgresServer
from ztgate.store.tables import audit_records
from ztgate.testing import make_settings

from .harness import Replica, Upstream, gateway_toml, make_client, two_replicas

TAG = "postgres-store"


@dataclass
class Cluster:
    postgres: PostgresServer
    url: str
    one: Replica
    two: Replica

    def records(self) -> dict[str, list[tuple[str, str]]]:
        """(kind, outcome) of every record, by call id, in chain order."""
        database = Database(self.url)
        try:
            with database.read() as conn:
                rows = conn.execute(
                    select(audit_records.c.call_id, audit_records.c.kind, audit_records.c.outcome)
                    .where(audit_records.c.call_id.is_not(None))
                    .order_by(audit_records.c.chain, audit_records.c.seq)
                ).all()
        finally:
            database.dispose()
        found: dict[str, list[tuple[str, str]]] = {}
        for call_id, kind, outcome in rows:
            found.setdefault(call_id, []).append((kind, outcome))
        return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("postgres-replicas")
    tools: list[dict[str, Any]] = [
        {
            "name": "echo",
            "url": f"{upstream.url}/echo/{TAG}",
            "risk": "write",
            "input_schema": {"type": "object"},
        }
    ]
    with PostgresServer() as postgres:
        url = postgres.create_database("ztgate")
        toml = "[limits]\nburst_calls_per_second = 0\n\n" + gateway_toml(
            tools, store={"url": url, "busy_timeout_ms": 1000}
        )
        make_settings(workdir, toml)  # ztgate init: keys, CA, and the schema in PostgreSQL
        with two_replicas(workdir) as (one, two):
            yield Cluster(postgres, url, one, two)


def _call(client: httpx.Client, text: str) -> httpx.Response:
    return client.post("/v1/calls", json={"tool": "echo", "arguments": {"msg": text}})


def test_both_replicas_append_to_one_chain_that_verifies(cluster: Cluster) -> None:
    with make_client(cluster.one.url) as one, make_client(cluster.two.url) as two:
        answers = [_call(client, f"hello-{i}") for i, client in enumerate((one, two, one, two))]
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    records = cluster.records()
    for answer in answers:
        assert records[answer.json()["call_id"]] == [("decision", "allow"), ("result", "allow")]
    report = cluster.one.verify_audit()
    assert [chain["chain"] for chain in report["chains"]] == ["main"]


def test_calls_fail_closed_while_postgresql_restarts_and_no_answered_call_is_unrecorded(
    cluster: Cluster, upstream: Upstream
) -> None:
    outcomes: list[tuple[float, float, int, str, str | None]] = []
    stop = threading.Event()
    lock = threading.Lock()

    def load(replica: Replica, name: str) -> None:
        with make_client(replica.url) as client:
            i = 0
            while not stop.is_set():
                i += 1
                started = time.monotonic()
                response = _call(client, f"{name}-{i}")
                call_id = response.json().get("call_id") if response.status_code == 200 else None
                with lock:
                    outcomes.append(
                        (started, time.monotonic(), response.status_code, response.text, call_id)
                    )

    workers = [
        threading.Thread(target=load, args=(cluster.one, "one")),
        threading.Thread(target=load, args=(cluster.two, "two")),
    ]
    before = len(upstream.received(f"/echo/{TAG}"))
    recorded_before = set(cluster.records())
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        cluster.postgres.stop()  # a fast shutdown: every connection is cut
        down_from = time.monotonic()
        time.sleep(1.5)
        down_until = time.monotonic()
        cluster.postgres.start()
        time.sleep(2.0)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)

    allowed = [o for o in outcomes if o[2] == 200]
    unavailable = [o for o in outcomes if o[2] == 503]
    assert len(allowed) + len(unavailable) == len(outcomes), {o[2] for o in outcomes}
    assert all("store-unavailable" in text for _, _, _, text, _ in unavailable)
    # Every call sent and answered while PostgreSQL was down was refused ...
    during = [o for o in outcomes if o[0] >= down_from and o[1] <= down_until]
    assert during and all(status == 503 for _, _, status, _, _ in during)
    # ... and calls work again once it is back, on both replicas.
    after = [o for o in outcomes if o[0] > down_until + 1.0]
    assert after and all(status == 200 for _, _, status, _, _ in after[-4:])
    # No call answered 200 lacks its records; the chain verifies.
    records = cluster.records()
    for _, _, _, _, call_id in allowed:
        assert call_id is not None
        assert records.get(call_id) == [("decision", "allow"), ("result", "allow")], call_id
    # A tool ran only for calls whose allow was recorded first.
    ran = len(upstream.received(f"/echo/{TAG}")) - before
    decided = sum(
        1
        for call_id, kinds in records.items()
        if call_id not in recorded_before and ("decision", "allow") in kinds
    )
    assert len(allowed) <= ran <= decided
    cluster.one.verify_audit()


def test_a_replica_killed_under_load_loses_no_answered_call_and_leaves_the_chain_whole(
    cluster: Cluster,
) -> None:
    """SIGKILL one replica while both append: its open transaction rolls back, nothing forks."""
    answered: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def load(replica: Replica, name: str) -> None:
        with make_client(replica.url) as client:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    response = _call(client, f"{name}-{i}")
                except httpx.HTTPError:
                    time.sleep(0.05)  # the replica is gone
                    continue
                if response.status_code == 200:
                    with lock:
                        answered.append(response.json()["call_id"])

    workers = [
        threading.Thread(target=load, args=(cluster.one, "one")),
        threading.Thread(target=load, args=(cluster.two, "two")),
    ]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)
        cluster.two.kill()
        time.sleep(1.0)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        cluster.two.start()  # for the tests after this one

    assert answered
    records = cluster.records()
    for call_id in answered:
        assert records.get(call_id) == [("decision", "allow"), ("result", "allow")], call_id
    cluster.one.verify_audit()
    with make_client(cluster.two.url) as two:
        assert _call(two, "after the kill").status_code == 200


def test_a_tool_added_by_the_cli_is_callable_on_every_replica_from_the_next_call(
    cluster: Cluster, upstream: Upstream
) -> None:
    added = cluster.one.cli(
        "tools", "add", "shared", "--url", f"{upstream.url}/echo/{TAG}-shared", "--risk", "read"
    )
    assert added.returncode == 0, added.stdout + added.stderr
    body = {"tool": "shared", "arguments": {}}
    with make_client(cluster.one.url) as one, make_client(cluster.two.url) as two:
        assert [c.post("/v1/calls", json=body).status_code for c in (one, two)] == [200, 200]
