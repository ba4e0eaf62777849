"""SIGKILL the gateway mid-load: every answer the clients got is in the audit log.

Twelve client threads drive a mix of allowed and refused calls at a gateway
process; after ~600 answers the gateway is killed with SIGKILL (no shutdown,
no drain, no final checkpoint), restarted on the same data directory, and the
load finishes against the new process. Then, for every call whose response
reached a client, its audit records must be there and match the answer; every
call the tool received must have a durable `decision` record; and the chain
must verify.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ztgate.testing import make_settings

from .harness import GatewayProcess, Upstream, gateway_toml, make_client

TOTAL_ANSWERS = 1100
KILL_AFTER = 600
THREADS = 12

# What each kind of request must be answered with, and recorded as.
EXPECTED: dict[str, tuple[int, list[tuple[str, str]]]] = {
    "allowed": (200, [("decision", "allow"), ("result", "allow")]),
    "unknown-tool": (403, [("decision", "deny")]),
    "bad-arguments": (403, [("decision", "deny")]),
    "malformed": (400, [("rejected", "deny")]),
    "unknown-field": (422, [("rejected", "deny")]),
}
MIX = ["allowed"] * 6 + ["unknown-tool", "bad-arguments", "malformed", "unknown-field"]


def _request(kind: str, number: int) -> dict[str, Any]:
    if kind == "allowed":
        return {"json": {"tool": "echo", "arguments": {"n": number}}}
    if kind == "unknown-tool":
        return {"json": {"tool": "not-registered", "arguments": {"n": number}}}
    if kind == "bad-arguments":
        return {"json": {"tool": "echo", "arguments": {"n": str(number)}}}
    if kind == "malformed":
        return {
            "content": b'{"tool": "echo", "arguments": {"n": ',
            "headers": {"content-type": "application/json"},
        }
    return {"json": {"tool": "echo", "arguments": {}, "admin": True}}


@dataclass
class Load:
    """The shared state of the client threads."""

    gateway: GatewayProcess
    url: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    numbers: itertools.count[int] = field(default_factory=itertools.count)
    # call_id -> (kind, status, which gateway process answered)
    answered: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    answered_at_kill: int = 0
    killed: threading.Event = field(default_factory=threading.Event)
    restarted: threading.Event = field(default_factory=threading.Event)
    transport_errors: int = 0
    errors: list[BaseException] = field(default_factory=list)

    def worker(self) -> None:
        try:
            with make_client("", timeout=15) as client:
                while self._one(client):
                    pass
        except BaseException as exc:
            self.errors.append(exc)
            self.killed.set()
            self.restarted.set()

    def _one(self, client: httpx.Client) -> bool:
        with self.lock:
            if len(self.answered) >= TOTAL_ANSWERS or self.errors:
                return False
            number = next(self.numbers)
            url, epoch = self.url, self.gateway.starts
        kind = MIX[number % len(MIX)]
        try:
            response = client.post(f"{url}/v1/calls", **_request(kind, number))
        except httpx.TransportError:
            # Only the kill may break a connection; wait for the new process.
            with self.lock:
                self.transport_errors += 1
            assert self.killed.is_set(), "a request failed before the gateway was killed"
            assert self.restarted.wait(60), "the gateway was not restarted"
            return True
        call_id = response.json()["call_id"]
        with self.lock:
            assert call_id not in self.answered, "a call id was reused"
            self.answered[call_id] = (kind, response.status_code, epoch)
            kill = len(self.answered) >= KILL_AFTER and not self.killed.is_set()
            if kill:
                self.answered_at_kill = len(self.answered)
                self.killed.set()
        if kill:
            self.gateway.kill()
        return True

    def restart(self) -> None:
        """Run in the main thread: wait for the kill, start the gateway again."""
        assert self.killed.wait(60), "the load never reached the kill point"
        if self.errors:
            return
        self.gateway.kill()  # waits for the process to be gone
        self.gateway.start()
        with self.lock:
            self.url = self.gateway.url
        self.restarted.set()


@pytest.mark.slow
def test_sigkill_mid_load_loses_no_answered_call(tmp_path: Path, upstream: Upstream) -> None:
    tag = f"crash-{uuid.uuid4().hex[:8]}"
    tools = [
        {
            "name": "echo",
            "url": f"{upstream.url}/echo/{tag}",
            "risk": "write",  # recorded before it runs: the property under test
            "input_schema": {
                "type": "object",
                "properties": {"n": {"type": "integer"}},
                "additionalProperties": False,
            },
        }
    ]
    make_settings(tmp_path, gateway_toml(tools))
    gateway = GatewayProcess(tmp_path)
    gateway.start()
    try:
        load = Load(gateway, gateway.url)
        threads = [threading.Thread(target=load.worker) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        load.restart()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert not load.errors, load.errors
        assert gateway.starts == 2
        assert load.transport_errors > 0, "the kill hit no request in flight"
    finally:
        gateway.stop()

    answered = load.answered
    assert len(answered) >= TOTAL_ANSWERS
    assert load.answered_at_kill >= KILL_AFTER
    after_restart = [epoch for _, _, epoch in answered.values() if epoch == 2]
    assert len(after_restart) >= 300, "the load did not continue after the restart"

    # Every answer was the right one for its request.
    for call_id, (kind, status, _) in answered.items():
        assert status == EXPECTED[kind][0], (call_id, kind, status)

    # Every call whose answer reached a client is in the log, as answered.
    records = gateway.audit_by_call()
    missing = [call_id for call_id in answered if call_id not in records]
    assert not missing, f"{len(missing)} answered calls have no audit record: {missing[:5]}"
    for call_id, (kind, _, _) in answered.items():
        assert records[call_id] == EXPECTED[kind][1], (call_id, kind, records[call_id])

    # The decision to run a tool is durable before the tool runs: every call
    # the tool received, answered or cut off by the kill, has its allow.
    received = [call["call_id"] for call in upstream.received(f"/echo/{tag}")]
    assert len(received) >= sum(1 for kind, _, _ in answered.values() if kind == "allowed")
    for call_id in received:
        assert ("decision", "allow") in records.get(call_id, []), call_id

    # The chain verifies, in the database and as an exported file.
    report = gateway.verify_audit()
    assert sum(chain["records"] for chain in report["chains"]) >= len(answered)
    export = tmp_path / "audit.jsonl"
    done = gateway.cli("audit", "export", "--output", str(export))
    assert done.returncode == 0, done.stderr
    exported = {
        line["record"].get("call_id")
        for line in map(json.loads, export.read_text().splitlines())
        if line["type"] == "record"
    }
    assert set(answered) <= exported
    done = gateway.cli("audit", "verify", "--file", str(export))
    assert done.returncode == 0, done.stdout + done.stderr
