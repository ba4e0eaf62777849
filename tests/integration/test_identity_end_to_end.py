"""The identity issue's end to end: an agent gets a JWT-SVID from ztgate's Workload API
with py-spiffe's own client, calls through the gateway with it, and is refused on the
very next call after `ztgate revoke`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from spiffe import WorkloadApiClient

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

AGENT = "spiffe://ztgate.local/agent/end-to-end"


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, dead_port: int
) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("e2e")
    toml = gateway_toml(
        main_tools(upstream, dead_port, tag="e2e"), gateway={"authentication": "required"}
    )
    make_settings(workdir, toml)
    process = GatewayProcess(workdir)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_an_svid_from_the_workload_api_authenticates_until_revoked(
    gateway: GatewayProcess,
) -> None:
    # Register this very process (the test runner) by uid and executable.
    exe = os.path.realpath(sys.executable)
    registered = gateway.cli(
        "agents", "register", AGENT, "--selector", f"unix:uid:{os.getuid()}",
        "--selector", f"unix:path:{exe}",
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr

    socket = gateway.workdir / ".ztgate" / "agent.sock"
    with WorkloadApiClient(socket_path=f"unix://{socket}") as workload_api:
        x509 = workload_api.fetch_x509_svid()
        assert str(x509.spiffe_id) == AGENT
        token = workload_api.fetch_jwt_svid(audience={"ztgate"}).token

        # A task whose warrant is bound to the key of the SVID it received.
        task = TaskCredentials(gateway.workdir, AGENT, x509.private_key)
        with make_client(gateway.url) as client:
            headers = {"Authorization": f"Bearer {token}"}
            call = {"tool": "lookup", "arguments": {"q": "who am i"}}
            proven = {**headers, **task.headers("lookup", call["arguments"])}
            allowed = client.post("/v1/calls", json=call, headers=proven)
            assert allowed.status_code == 200, allowed.text
            [record] = gateway.audit_records(allowed.json()["call_id"])
            assert record["agent"] == AGENT

            revoked = gateway.cli("revoke", "agent", AGENT, "--reason", "end-to-end test")
            assert revoked.returncode == 0, revoked.stderr

            proven = {**headers, **task.headers("lookup", call["arguments"])}
            refused = client.post("/v1/calls", json=call, headers=proven)
            problem = assert_problem(refused, 401)
            assert "revoked" in problem["detail"]
            assert [r["outcome"] for r in gateway.audit_records(problem["call_id"])] == ["deny"]

        # And the Workload API issues nothing new to the revoked agent.
        with pytest.raises(Exception, match="PERMISSION_DENIED"):
            workload_api.fetch_jwt_svid(audience={"ztgate"})
    gateway.verify_audit()
