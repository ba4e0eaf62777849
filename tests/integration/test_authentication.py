"""`[gateway] authentication = "required"`: every call proves who it is with a JWT-SVID.

A real gateway process; entries registered in its database, SVIDs issued by
its own CA (loaded from its directory), revocation through the CLI.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.entries import EntryRegistry
from ztgate.testing import make_settings

from .harness import (
    GatewayProcess,
    TaskCredentials,
    Upstream,
    assert_problem,
    gateway_toml,
    main_tools,
    make_client,
)

AGENT = "spiffe://ztgate.local/agents/alice"
LATE = "spiffe://ztgate.local/agents/late"
STRANGER = "spiffe://ztgate.local/agents/stranger"


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, dead_port: int
) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("authenticated")
    toml = gateway_toml(
        main_tools(upstream, dead_port, tag="auth"), gateway={"authentication": "required"}
    )
    make_settings(workdir, toml)
    # Registered before the gateway starts: it reads the entries at start-up.
    _register(workdir, AGENT)
    process = GatewayProcess(workdir)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _register(workdir: Path, spiffe_id: str) -> None:
    settings = load_settings(workdir / "ztgate.toml")
    database = settings.open_database()
    try:
        EntryRegistry(database, SystemClock(), "ztgate.local").register(
            spiffe_id, [f"unix:path:/opt/agents/{spiffe_id.rsplit('/', 1)[-1]}"]
        )
    finally:
        database.dispose()


def _token(workdir: Path, spiffe_id: str, audience: str = "ztgate") -> str:
    ca = CertificateAuthority.load(workdir / ".ztgate" / "ca", SystemClock())
    return ca.issue_jwt_svid(spiffe_id, [audience], ttl=300)


def _task(workdir: Path, spiffe_id: str) -> TaskCredentials:
    """A task for `spiffe_id`, bound to the key of an X.509-SVID issued to it."""
    ca = CertificateAuthority.load(workdir / ".ztgate" / "ca", SystemClock())
    svid = ca.issue_x509_svid(spiffe_id)
    return TaskCredentials(workdir, spiffe_id, svid.private_key)


def _call(
    client: httpx.Client,
    token: str | None,
    *,
    header: str | None = None,
    task: TaskCredentials | None = None,
) -> httpx.Response:
    headers = task.headers("lookup", {"q": "x"}) if task is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if header is not None:
        headers["Authorization"] = header
    return client.post(
        "/v1/calls", json={"tool": "lookup", "arguments": {"q": "x"}}, headers=headers
    )


def _assert_unauthenticated(response: httpx.Response) -> dict[str, object]:
    problem = assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    return problem


def test_a_valid_jwt_svid_is_allowed_and_the_record_names_the_agent(
    secured: GatewayProcess,
) -> None:
    with make_client(secured.url) as client:
        response = _call(client, _token(secured.workdir, AGENT), task=_task(secured.workdir, AGENT))
    assert response.status_code == 200, response.text
    body = response.json()
    checks = [v["check"] for v in body["verdicts"]]
    assert checks[:6] == ["authenticate", "warrant", "halt", "proof", "limits", "scope"]
    records = secured.audit_records(body["call_id"])
    assert records
    assert all(record["agent"] == AGENT for record in records)


def test_no_credentials_is_401(secured: GatewayProcess) -> None:
    with make_client(secured.url) as client:
        response = _call(client, None)
    problem = _assert_unauthenticated(response)
    assert "no credentials" in str(problem["detail"])
    records = secured.audit_records(str(problem["call_id"]))
    assert [(r["kind"], r["outcome"], r["status"]) for r in records] == [("decision", "deny", 401)]


def test_a_malformed_authorization_header_is_401(secured: GatewayProcess) -> None:
    with make_client(secured.url) as client:
        for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer a b"):
            _assert_unauthenticated(_call(client, None, header=header))


def test_a_token_for_another_audience_is_401(secured: GatewayProcess) -> None:
    with make_client(secured.url) as client:
        response = _call(client, _token(secured.workdir, AGENT, audience="someone-else"))
    _assert_unauthenticated(response)


def test_an_unregistered_spiffe_id_is_401_until_registered(secured: GatewayProcess) -> None:
    with make_client(secured.url) as client:
        problem = _assert_unauthenticated(_call(client, _token(secured.workdir, STRANGER)))
        assert "not registered" in str(problem["detail"])
        # Registered while the gateway runs: the entries generation moves.
        _register(secured.workdir, LATE)
        response = _call(client, _token(secured.workdir, LATE), task=_task(secured.workdir, LATE))
        assert response.status_code == 200, response.text


def test_a_revoked_agent_is_refused_on_the_next_call(secured: GatewayProcess) -> None:
    victim = "spiffe://ztgate.local/agents/victim"
    _register(secured.workdir, victim)
    token = _token(secured.workdir, victim)
    task = _task(secured.workdir, victim)
    with make_client(secured.url) as client:
        assert _call(client, token, task=task).status_code == 200
        done = secured.cli("revoke", "agent", victim, "--reason", "compromised")
        assert done.returncode == 0, done.stdout + done.stderr
        response = _call(client, token, task=task)
    problem = _assert_unauthenticated(response)
    assert "revoked" in str(problem["detail"])
    records = secured.audit_records(str(problem["call_id"]))
    assert [(r["kind"], r["outcome"], r["status"]) for r in records] == [("decision", "deny", 401)]
    assert "revoked" in records[0]["reasons"][0]["reason"]


def test_authentication_off_ignores_the_header_and_stays_loopback(
    gateway: GatewayProcess,
) -> None:
    started = time.monotonic()
    with make_client(gateway.url) as client:
        response = _call(client, None, header="Basic whatever")
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 10
