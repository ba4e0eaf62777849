"""`[gateway] tls = true`: HTTPS, and agents authenticate with their X.509-SVID (mTLS).

A real gateway process serving its own X.509-SVID; clients trust the trust
domain's root with hostname checking off (the server certificate carries a
SPIFFE ID, no DNS name) and present X.509-SVIDs issued by the gateway's CA.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from ztgate.clock import SystemClock
from ztgate.identity import _hazmat
from ztgate.identity.authority import CertificateAuthority, X509Svid
from ztgate.testing import make_settings

from .harness import (
    GatewayProcess,
    TaskCredentials,
    Upstream,
    assert_problem,
    gateway_toml,
    main_tools,
)
from .test_authentication import _register

AGENT = "spiffe://ztgate.local/agents/mtls-alice"
VICTIM = "spiffe://ztgate.local/agents/mtls-victim"
GATEWAY_ID = "spiffe://ztgate.local/ztgate/gateway"


def _ca(workdir: Path) -> CertificateAuthority:
    return CertificateAuthority.load(workdir / ".ztgate" / "ca", SystemClock())


def _roots_pem(workdir: Path) -> bytes:
    return b"".join(_hazmat.certificate_pem(root) for root in _ca(workdir).roots())


def _context(
    workdir: Path, svid: X509Svid | None = None, where: Path | None = None
) -> ssl.SSLContext:
    """Trust the gateway's root (no hostname: a URI SAN only); present `svid` if given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=_roots_pem(workdir).decode())
    if svid is not None:
        assert where is not None
        assert svid.private_key is not None
        where.mkdir(parents=True, exist_ok=True)
        chain, key = where / "svid.pem", where / "svid.key"
        chain.write_bytes(b"".join(_hazmat.certificate_pem(c) for c in svid.chain))
        key.write_bytes(_hazmat.private_pem(svid.private_key))
        key.chmod(0o600)
        context.load_cert_chain(chain, key)
    return context


def _call(url: str, context: ssl.SSLContext, task: TaskCredentials | None = None) -> httpx.Response:
    headers = task.headers("lookup", {"q": "x"}) if task is not None else {}
    with httpx.Client(base_url=url, verify=context, timeout=10) as client:
        return client.post(
            "/v1/calls", json={"tool": "lookup", "arguments": {"q": "x"}}, headers=headers
        )


@pytest.fixture(scope="module")
def mtls(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, dead_port: int
) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("mtls")
    toml = gateway_toml(
        main_tools(upstream, dead_port, tag="mtls"),
        gateway={"authentication": "required", "tls": True},
    )
    make_settings(workdir, toml)
    _register(workdir, AGENT)
    process = GatewayProcess(workdir, verify=_context(workdir))
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_the_gateway_serves_its_own_svid_and_keeps_it_private(mtls: GatewayProcess) -> None:
    tls_dir = mtls.workdir / ".ztgate" / "tls"
    for name in ("gateway.pem", "gateway.key", "roots.pem"):
        assert (tls_dir / name).stat().st_mode & 0o777 == 0o600
    assert mtls.verify is not None
    with httpx.Client(verify=mtls.verify, timeout=10) as client:
        response = client.get(f"{mtls.url}/healthz")
        assert response.status_code == 200
    pem = ssl.get_server_certificate(("127.0.0.1", mtls.port))
    served = x509.load_pem_x509_certificate(pem.encode())
    sans = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [GATEWAY_ID]


def test_a_client_x509_svid_is_allowed_and_the_record_names_the_agent(
    mtls: GatewayProcess, tmp_path: Path
) -> None:
    svid = _ca(mtls.workdir).issue_x509_svid(AGENT, ttl=300)
    # The task's warrant is bound to the very key of the client certificate.
    task = TaskCredentials(mtls.workdir, AGENT, svid.private_key)
    response = _call(mtls.url, _context(mtls.workdir, svid, tmp_path), task)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdicts"][0]["check"] == "authenticate"
    assert AGENT in body["verdicts"][0]["reason"]
    records = mtls.audit_records(body["call_id"])
    assert records
    assert all(record["agent"] == AGENT for record in records)


def test_no_certificate_and_no_bearer_is_401(mtls: GatewayProcess) -> None:
    response = _call(mtls.url, _context(mtls.workdir))
    problem = assert_problem(response, 401)
    assert "no credentials" in str(problem["detail"])


def test_a_bearer_token_still_works_without_a_certificate(mtls: GatewayProcess) -> None:
    ca = _ca(mtls.workdir)
    token = ca.issue_jwt_svid(AGENT, ["ztgate"], ttl=300)
    task = TaskCredentials(mtls.workdir, AGENT, ca.issue_x509_svid(AGENT).private_key)
    with httpx.Client(base_url=mtls.url, verify=_context(mtls.workdir), timeout=10) as client:
        response = client.post(
            "/v1/calls",
            json={"tool": "lookup", "arguments": {"q": "x"}},
            headers={"Authorization": f"Bearer {token}", **task.headers("lookup", {"q": "x"})},
        )
    assert response.status_code == 200, response.text


def test_a_certificate_from_an_unknown_ca_is_not_allowed(
    mtls: GatewayProcess, tmp_path: Path
) -> None:
    stranger_ca = CertificateAuthority.create(tmp_path / "other-ca", "ztgate.local", SystemClock())
    svid = stranger_ca.issue_x509_svid(AGENT, ttl=300)
    try:
        response = _call(mtls.url, _context(mtls.workdir, svid, tmp_path / "client"))
    except httpx.TransportError:
        return  # the handshake refused it
    assert response.status_code != 200
    assert_problem(response, 401)


def test_a_revoked_serial_is_refused_on_the_next_call(mtls: GatewayProcess, tmp_path: Path) -> None:
    _register(mtls.workdir, VICTIM)
    svid = _ca(mtls.workdir).issue_x509_svid(VICTIM, ttl=300)
    context = _context(mtls.workdir, svid, tmp_path)
    task = TaskCredentials(mtls.workdir, VICTIM, svid.private_key)
    with httpx.Client(base_url=mtls.url, verify=context, timeout=10) as client:
        call = {"tool": "lookup", "arguments": {"q": "x"}}
        first = client.post("/v1/calls", json=call, headers=task.headers("lookup", {"q": "x"}))
        assert first.status_code == 200, first.text
        done = mtls.cli("revoke", "serial", str(svid.serial), "--reason", "key leaked")
        assert done.returncode == 0, done.stdout + done.stderr
        # The same connection (keep-alive): the chain is checked again on every call.
        response = client.post("/v1/calls", json=call, headers=task.headers("lookup", {"q": "x"}))
    problem = assert_problem(response, 401)
    assert "revoked" in str(problem["detail"])
