"""Fixtures for the SDK's unit tests: a real CA, an identity that rotates on demand, and an
in-memory gateway (an httpx transport) that checks warrants and proofs with ztgate's own code.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography import x509

from ztgate.canonical import canonical_json
from ztgate.clock import SystemClock
from ztgate.identity import _hazmat
from ztgate.identity.authority import CertificateAuthority
from ztgate.sdk.models import SvidKey
from ztgate.tasks.scope import parse_scope
from ztgate.warrants import proof as proofs
from ztgate.warrants import token as tokens
from ztgate.warrants.jwk import key_thumbprint
from ztgate.warrants.keys import WarrantKey

DOMAIN = "sdk.example"
AGENT = f"spiffe://{DOMAIN}/agent/main"
SUB_AGENT = f"spiffe://{DOMAIN}/agent/sub"
AUDIENCE = "ztgate"
ISSUER = f"ztgate:{DOMAIN}"
SCOPE = {"tools": {"echo": {}, "search": {"limits": {"q": {"pattern": "[a-z ]+"}}}}}


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca", DOMAIN, SystemClock())


class FakeIdentity:
    """An `IdentityProvider` over a real CA: `rotate()` stands for the Workload API's push."""

    def __init__(self, ca: CertificateAuthority, spiffe_id: str = AGENT) -> None:
        self.ca = ca
        self.spiffe_id = spiffe_id
        self.jwt_fetches = 0
        self.closed = False
        self.current = self._issue()

    def _issue(self) -> SvidKey:
        svid = self.ca.issue_x509_svid(self.spiffe_id)
        return SvidKey.from_chain(self.spiffe_id, svid.private_key, svid.chain)

    def rotate(self) -> SvidKey:
        self.current = self._issue()
        return self.current

    def svid(self) -> SvidKey:
        return self.current

    def jwt_svid(self) -> str:
        self.jwt_fetches += 1
        return self.ca.issue_jwt_svid(self.spiffe_id, [AUDIENCE])

    def cached_jwt_svid(self) -> str | None:
        return None

    def trust_roots(self) -> list[x509.Certificate]:
        return self.ca.roots()

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def identity(ca: CertificateAuthority) -> FakeIdentity:
    return FakeIdentity(ca)


def problem(status: int, detail: str, **extra: Any) -> httpx.Response:
    body = {"type": "urn:ztgate:problem:x", "title": "t", "status": status, "detail": detail}
    return httpx.Response(
        status,
        content=orjson.dumps(body | extra),
        headers={"content-type": "application/problem+json"},
    )


@dataclass
class FakeGateway:
    """The gateway's side of the wire contract, in memory, checked with ztgate's own code."""

    key: WarrantKey = field(default_factory=lambda: WarrantKey(_hazmat.generate_key(), "k1"))
    verifier: proofs.ProofVerifier = field(default_factory=proofs.ProofVerifier)
    seen_jti: set[str] = field(default_factory=set)
    requests: list[httpx.Request] = field(default_factory=list)
    binds: list[dict[str, Any]] = field(default_factory=list)
    # Replace to answer a path differently: (request) -> response or None to go on.
    override: Callable[[httpx.Request], httpx.Response | None] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.override is not None:
            answer = self.override(request)
            if answer is not None:
                return answer
        try:
            return self._route(request)
        except (proofs.ProofError, tokens.WarrantError) as exc:
            return problem(403, exc.message, call_id="c-denied")

    def _check_proof(
        self, request: httpx.Request, jkt: str, task_id: str, ath: str, canonical: bytes, **kw: str
    ) -> None:
        proof = self.verifier.verify(request.headers["ztgate-proof"], jkt=jkt)
        proofs.expect(
            proof,
            audience=AUDIENCE,
            task_id=task_id,
            ath=ath,
            canonical=canonical,
            now=time.time(),
            window=30,
            **kw,
        )
        if proof.jti in self.seen_jti:
            raise proofs.ProofError("already used (replay)")
        self.seen_jti.add(proof.jti)

    def _warrant(self, request: httpx.Request) -> tokens.Warrant:
        return tokens.verify(
            request.headers["ztgate-warrant"],
            {self.key.kid: self.key.public_key},
            issuer=ISSUER,
            audience=AUDIENCE,
            now=time.time(),
        )

    def _route(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        if request.url.path == "/v1/warrants/bind":
            leaf = x509.load_der_x509_certificate(base64.b64decode(body["x5c"][0]))
            jkt = key_thumbprint(leaf.public_key())
            ath = tokens.warrant_hash("")
            self._check_proof(request, jkt, body["task_id"], ath, canonical_json(body), op="bind")
            self.binds.append(body)
            now = time.time()
            warrant_id = body.get("warrant_id", "w-root")
            token = tokens.issue(
                self.key,
                issuer=ISSUER,
                audience=AUDIENCE,
                warrant_id=warrant_id,
                task_id=body["task_id"],
                agent=AGENT,
                scope=parse_scope(SCOPE),
                jkt=jkt,
                issued_at=now,
                expires_at=now + 600,
            )
            answer = {
                "warrant": token,
                "warrant_id": warrant_id,
                "task_id": body["task_id"],
                "agent": AGENT,
                "expires_at": now + 600,
            }
            return httpx.Response(200, json=answer)
        assert request.headers["authorization"].startswith("Bearer ey")
        warrant = self._warrant(request)
        if request.url.path == "/v1/calls":
            canonical = canonical_json(body["arguments"])
            self._check_proof(
                request, warrant.jkt, warrant.task_id, warrant.ath, canonical, tool=body["tool"]
            )
            why = warrant.scope.violation(body["tool"], body["arguments"])
            if why is not None:
                reasons = [{"check": "scope", "outcome": "deny", "reason": why}]
                return problem(403, f"scope: {why}", call_id="c-403", reasons=reasons)
            verdicts = [{"check": "scope", "outcome": "allow", "reason": "in scope"}]
            answer = {
                "call_id": f"c-{len(self.requests)}",
                "outcome": "allow",
                "result": {"echo": body["arguments"], "justification": body.get("justification")},
                "verdicts": verdicts,
            }
            return httpx.Response(200, json=answer)
        if request.url.path == "/v1/warrants/delegate":
            self._check_proof(
                request,
                warrant.jkt,
                warrant.task_id,
                warrant.ath,
                canonical_json(body),
                op="delegate",
            )
            if body.get("scope") and set(body["scope"]["tools"]) - set(warrant.scope.tools):
                return problem(403, "delegation adds a tool", call_id="c-del")
            answer = {
                "warrant_id": "w-child",
                "task_id": warrant.task_id,
                "agent": body["agent"],
                "depth": 1,
                "expires_at": time.time() + 60,
                "warrant": None,
            }
            return httpx.Response(201, json=answer)
        return problem(404, "no route")

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


class Approvals:
    """A gateway's approvals, faked over `FakeGateway.override`: the call asks until approved."""

    def __init__(self, gateway: FakeGateway, states: list[str], reason: str = "") -> None:
        self.states = states  # what successive waits answer
        self.reason = reason
        self.sent: list[tuple[str | None, bytes]] = []
        gateway.override = self

    def __call__(self, request: httpx.Request) -> httpx.Response | None:
        if request.url.path == "/v1/calls":
            approval = request.headers.get("ztgate-approval")
            self.sent.append((approval, request.content))
            if approval is None:
                answer = {
                    "call_id": "c-asked",
                    "outcome": "ask",
                    "detail": "a principal must approve this call",
                    "reasons": [{"check": "policy", "outcome": "ask", "reason": "critical"}],
                    "approval": {"id": "a1", "state": "pending", "expires_at": 2e9},
                }
                return httpx.Response(202, json=answer)
            return None
        if request.url.path == "/v1/approvals/a1/wait":
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            view: dict[str, Any] = {"id": "a1", "state": state, "expires_at": 2e9}
            if self.reason:
                view["reason"] = self.reason
            return httpx.Response(200, json={"approval": view})
        return None
