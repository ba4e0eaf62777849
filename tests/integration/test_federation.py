"""Federation: SVIDs of another trust domain (say, an existing SPIRE deployment's)
authenticate with its bundle configured; policy can tell them from local ones.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ztgate.clock import SystemClock
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.bundle import local_bundle, parse_bundle
from ztgate.identity.verify import verify_jwt_svid
from ztgate.testing import make_settings

from .harness import GatewayProcess, Upstream, assert_problem, gateway_toml, main_tools, make_client

PARTNER = "partner.example"
PARTNER_AGENT = f"spiffe://{PARTNER}/agent/booking"


@pytest.fixture(scope="module")
def partner(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(
        tmp_path_factory.mktemp("partner") / "ca", PARTNER, SystemClock()
    )


@pytest.fixture(scope="module")
def federated(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: Upstream,
    dead_port: int,
    partner: CertificateAuthority,
) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("federated")
    bundle = workdir / "partner-bundle.json"
    bundle.write_text(json.dumps(local_bundle(partner)))
    toml = gateway_toml(
        main_tools(upstream, dead_port, tag="federation"), gateway={"authentication": "required"}
    )
    toml = toml.replace(
        "[[tools]]",
        f'[[identity.federation]]\ntrust_domain = "{PARTNER}"\nbundle_file = "{bundle.name}"\n\n'
        "[[tools]]",
        1,
    )
    make_settings(workdir, toml)
    process = GatewayProcess(workdir)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _call(gateway: GatewayProcess, token: str) -> tuple[int, dict[str, object]]:
    with make_client(gateway.url) as client:
        response = client.post(
            "/v1/calls",
            json={"tool": "lookup", "arguments": {"q": "x"}},
            headers={"Authorization": f"Bearer {token}"},
        )
    return response.status_code, response.json()


def test_a_federated_jwt_svid_authenticates(
    federated: GatewayProcess, partner: CertificateAuthority
) -> None:
    token = partner.issue_jwt_svid(PARTNER_AGENT, ["ztgate"])
    status, body = _call(federated, token)
    assert status == 200, body
    [record] = federated.audit_records(str(body["call_id"]))
    assert record["agent"] == PARTNER_AGENT


def test_an_unfederated_domain_is_refused(federated: GatewayProcess, tmp_path: Path) -> None:
    stranger = CertificateAuthority.create(tmp_path / "ca", "stranger.example", SystemClock())
    token = stranger.issue_jwt_svid("spiffe://stranger.example/agent/x", ["ztgate"])
    with make_client(federated.url) as client:
        response = client.post(
            "/v1/calls",
            json={"tool": "lookup", "arguments": {}},
            headers={"Authorization": f"Bearer {token}"},
        )
    problem = assert_problem(response, 401)
    assert "not a trusted trust domain" in problem["detail"]


def test_a_partner_token_signed_by_another_key_is_refused(
    federated: GatewayProcess, tmp_path: Path
) -> None:
    impostor = CertificateAuthority.create(tmp_path / "fake", PARTNER, SystemClock())
    status, body = _call(federated, impostor.issue_jwt_svid(PARTNER_AGENT, ["ztgate"]))
    assert status == 401, body


def test_the_bundle_endpoint_serves_this_trust_domain(federated: GatewayProcess) -> None:
    with make_client(federated.url) as client:
        response = client.get("/v1/bundle")
        again = client.get("/v1/bundle")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["spiffe_sequence"] == again.json()["spiffe_sequence"]
    local = parse_bundle("ztgate.local", response.content)
    ca = CertificateAuthority.load(federated.workdir / ".ztgate" / "ca", SystemClock())
    token = ca.issue_jwt_svid("spiffe://ztgate.local/agent/peer", ["elsewhere"])
    verified = verify_jwt_svid(token, "elsewhere", {"ztgate.local": local}, time.time())
    assert verified.spiffe_id == "spiffe://ztgate.local/agent/peer"
    assert all("d" not in key for key in document["keys"]), "public keys only"
