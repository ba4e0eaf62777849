"""Federation: SVIDs of another trust domain (say, an existing SPIRE deployment's)
authenticate with its bundle configured; policy can tell them from local ones.

The bundle comes from a file, or from the peer's SPIFFE bundle endpoint: a
small HTTPS server (`https_web` with a private CA), or another ztgate serving
`GET /v1/bundle` with its own X.509-SVID (`https_spiffe`).
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from ztgate.cli.toml import value
from ztgate.clock import SystemClock
from ztgate.identity import _hazmat
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.bundle import local_bundle, parse_bundle
from ztgate.identity.verify import verify_jwt_svid
from ztgate.testing import make_settings

from .bundle_server import BundleServer
from .harness import (
    GatewayProcess,
    TaskCredentials,
    Upstream,
    assert_problem,
    gateway_toml,
    main_tools,
    make_client,
    run_cli,
)

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


def _call(
    gateway: GatewayProcess, token: str, task: TaskCredentials | None = None
) -> tuple[int, dict[str, object]]:
    proven = task.headers("lookup", {"q": "x"}) if task is not None else {}
    with make_client(gateway.url) as client:
        response = client.post(
            "/v1/calls",
            json={"tool": "lookup", "arguments": {"q": "x"}},
            headers={"Authorization": f"Bearer {token}", **proven},
        )
    return response.status_code, response.json()


def test_a_federated_jwt_svid_authenticates(
    federated: GatewayProcess, partner: CertificateAuthority
) -> None:
    token = partner.issue_jwt_svid(PARTNER_AGENT, ["ztgate"])
    # A task for the foreign agent, bound to its (foreign) SVID key.
    key = partner.issue_x509_svid(PARTNER_AGENT).private_key
    status, body = _call(federated, token, TaskCredentials(federated.workdir, PARTNER_AGENT, key))
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


# -- federation from a bundle endpoint ------------------------------------------------------


def _authenticated(response: httpx.Response) -> bool:
    """The `authenticate` check let the call through (whatever later checks decided)."""
    if response.status_code == 401:
        return False
    if response.status_code == 403:
        reasons = response.json().get("reasons", [])
        return all(reason["check"] != "authenticate" for reason in reasons)
    return response.status_code == 200


def _post(url: str, *, verify: ssl.SSLContext | bool = True, token: str = "") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, verify=verify, timeout=10) as client:
        return client.post(
            "/v1/calls", json={"tool": "lookup", "arguments": {"q": "x"}}, headers=headers
        )


def _federation_entry(**values: str) -> str:
    return "[[identity.federation]]\n" + "".join(f"{k} = {value(v)}\n" for k, v in values.items())


def _gateway_context(workdir: Path, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """Trust a gateway's trust domain (its SVID has no DNS name); present `client` if given."""
    ca = CertificateAuthority.load(workdir / ".ztgate" / "ca", SystemClock())
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.load_verify_locations(
        cadata=b"".join(_hazmat.certificate_pem(r) for r in ca.roots()).decode()
    )
    if client is not None:
        context.load_cert_chain(*client)
    return context


def _client_svid(ca: CertificateAuthority, spiffe_id: str, where: Path) -> tuple[Path, Path]:
    svid = ca.issue_x509_svid(spiffe_id, ttl=600)
    assert svid.private_key is not None
    where.mkdir(parents=True, exist_ok=True)
    chain, key = where / "svid.pem", where / "svid.key"
    chain.write_bytes(b"".join(_hazmat.certificate_pem(c) for c in svid.chain))
    key.write_bytes(_hazmat.private_pem(svid.private_key))
    key.chmod(0o600)
    return chain, key


def _listed(gateway: GatewayProcess, domain: str = PARTNER) -> dict[str, Any]:
    done = gateway.cli("federation", "list", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    [status] = [s for s in json.loads(done.stdout) if s["trust_domain"] == domain]
    return cast(dict[str, Any], status)


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _partner_domain(directory: Path) -> tuple[Path, CertificateAuthority]:
    """A second trust domain, initialised as `ztgate init --trust-domain partner.example` does."""
    directory.mkdir(parents=True)
    settings = make_settings(directory, f'[identity]\ntrust_domain = "{PARTNER}"\n')
    ca = CertificateAuthority.load(settings.path(settings.identity.ca_dir), SystemClock())
    return directory / "ztgate.toml", ca


def test_a_bundle_endpoint_federates_jwt_and_x509_svids_until_the_peer_drops_its_keys(
    tmp_path: Path, upstream: Upstream, dead_port: int
) -> None:
    _, partner = _partner_domain(tmp_path / "partner")
    endpoint = BundleServer(tmp_path / "endpoint").start()
    endpoint.document = json.dumps(local_bundle(partner)).encode()
    workdir = tmp_path / "gateway"
    toml = gateway_toml(
        main_tools(upstream, dead_port, tag="federation-endpoint"),
        gateway={"authentication": "required", "tls": True},
    ).replace(
        "[[tools]]",
        _federation_entry(
            trust_domain=PARTNER,
            bundle_endpoint_url=endpoint.url,
            ca_file=str(endpoint.ca_file),
        )
        + "\n[[tools]]",
        1,
    )
    workdir.mkdir()
    make_settings(workdir, toml)
    gateway = GatewayProcess(workdir, verify=_gateway_context(workdir))
    gateway.start()
    try:
        # The gateway fetches the bundle at start, in the background.
        _wait_for(lambda: _listed(gateway)["bundle_from"] == "endpoint", "the first fetch")
        status = _listed(gateway)
        assert (status["x509_roots"], status["jwt_keys"]) == (1, 1)
        assert status["last_error"] is None and status["source"] == "https_web"
        assert endpoint.requests == ["/partner/bundle.json"]

        # A foreign agent's JWT-SVID authenticates, as a non-local principal.
        response = _post(gateway.url, verify=gateway.verify or True, token=_token(partner))
        assert _authenticated(response), response.text
        [record, *_] = gateway.audit_records(response.json()["call_id"])
        assert record["agent"] == PARTNER_AGENT

        # So does its X.509-SVID over mTLS, once the gateway's handshake trusts the partner root.
        svid = _client_svid(partner, PARTNER_AGENT, tmp_path / "agent")
        responses: list[httpx.Response] = []

        def mtls_call() -> bool:
            try:
                responses.append(_post(gateway.url, verify=_gateway_context(workdir, svid)))
            except httpx.TransportError:
                return False  # the root is not in the handshake's trust store yet
            return True

        _wait_for(mtls_call, "the partner root in the TLS trust store")
        assert _authenticated(responses[-1]), responses[-1].text
        [record, *_] = gateway.audit_records(responses[-1].json()["call_id"])
        assert record["agent"] == PARTNER_AGENT

        metrics = httpx.get(f"{gateway.url}/metrics", verify=gateway.verify or True).text
        keys = f'ztgate_federation_bundle_keys{{trust_domain="{PARTNER}",use="jwt-svid"}} 1.0'
        assert keys in metrics
        assert (
            f'ztgate_federation_refreshes_total{{result="ok",trust_domain="{PARTNER}"}}' in metrics
        )

        # The peer re-keys its trust domain: its bundle drops the old keys.
        rekeyed = CertificateAuthority.create(tmp_path / "rekeyed", PARTNER, SystemClock())
        endpoint.document = json.dumps(local_bundle(rekeyed)).encode()
        done = gateway.cli("federation", "refresh")
        assert done.returncode == 0, done.stdout + done.stderr
        assert _listed(gateway)["sequence"] is not None

        refused = _post(gateway.url, verify=gateway.verify or True, token=_token(partner))
        problem = assert_problem(refused, 401)
        assert f"is not in the bundle of {PARTNER}" in problem["detail"]
        refused = _post(gateway.url, verify=_gateway_context(workdir, svid))
        problem = assert_problem(refused, 401)
        assert f"does not chain to a root of {PARTNER}" in problem["detail"]
        assert _authenticated(
            _post(gateway.url, verify=gateway.verify or True, token=_token(rekeyed))
        )
    finally:
        gateway.stop()
        endpoint.stop()


def test_https_spiffe_federation_with_another_ztgate_survives_its_outage(
    tmp_path: Path, upstream: Upstream, dead_port: int
) -> None:
    # The peer: another ztgate, serving its bundle at GET /v1/bundle over HTTPS with its SVID.
    peer_config, partner = _partner_domain(tmp_path / "peer")
    peer_config.write_text(
        gateway_toml([], gateway={"authentication": "required", "tls": True})
        + f'[identity]\ntrust_domain = "{PARTNER}"\n'
    )
    peer = GatewayProcess(peer_config.parent, verify=_gateway_context(peer_config.parent))
    peer.start()
    workdir = tmp_path / "gateway"
    workdir.mkdir()
    bootstrap = workdir / "partner-bootstrap.json"
    done = run_cli(peer_config, "ca", "bundle", "-o", str(bootstrap))
    assert done.returncode == 0, done.stdout + done.stderr
    toml = gateway_toml(
        main_tools(upstream, dead_port, tag="federation-spiffe"),
        gateway={"authentication": "required"},
    ).replace(
        "[[tools]]",
        _federation_entry(
            trust_domain=PARTNER,
            bundle_file=bootstrap.name,
            bundle_endpoint_url=f"https://127.0.0.1:{peer.port}/v1/bundle",
            endpoint_profile="https_spiffe",
            endpoint_spiffe_id=f"spiffe://{PARTNER}/ztgate/gateway",
        )
        + "\n[[tools]]",
        1,
    )
    make_settings(workdir, toml)
    gateway = GatewayProcess(workdir)
    try:
        gateway.start()
        _wait_for(lambda: _listed(gateway)["bundle_from"] == "endpoint", "the first fetch")
        assert _listed(gateway)["source"] == "https_spiffe"
        assert _authenticated(_post(gateway.url, token=_token(partner)))

        # The peer goes down; the gateway restarts and still trusts the last bundle it fetched.
        peer.stop()
        gateway.stop()
        gateway.start()
        status = _listed(gateway)
        assert status["bundle_from"] == "endpoint" and status["jwt_keys"] == 1
        assert _authenticated(_post(gateway.url, token=_token(partner)))
        # Refreshing now fails, and changes nothing but the status.
        done = gateway.cli("federation", "refresh", PARTNER)
        assert done.returncode == 1, done.stdout + done.stderr
        status = _listed(gateway)
        assert status["last_error"] and status["failures"] == 1 and status["jwt_keys"] == 1
        assert _authenticated(_post(gateway.url, token=_token(partner)))
        assert "Traceback" not in gateway.log_path.read_text()
    finally:
        gateway.stop()
        peer.stop()


def _token(ca: CertificateAuthority) -> str:
    return ca.issue_jwt_svid(PARTNER_AGENT, ["ztgate"])
