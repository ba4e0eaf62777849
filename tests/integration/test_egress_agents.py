"""Agents on the egress proxy, for real: a gateway process, its proxy on TCP, raw connections.

An agent's connection carries its JWT-SVID (`Proxy-Authorization: Bearer`),
its task's warrant and a proof for the tool `egress` over exactly that
destination; the gateway's own checks decide it (egress/agents.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.egress.agents import egress_arguments
from ztgate.identity.authority import CertificateAuthority
from ztgate.ports import free_port
from ztgate.sdk.egress import EgressTransport
from ztgate.testing import make_settings

from .egress_kit import HeaderNames, egress_records, threaded_http_server
from .harness import GatewayProcess, TaskCredentials, gateway_toml
from .test_authentication import _register, _token

AGENT = "spiffe://ztgate.local/agents/browser"


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    with threaded_http_server(HeaderNames) as port:
        yield port


class Proxied:
    def __init__(self, gateway: GatewayProcess, proxy_port: int, echo: int) -> None:
        self.gateway, self.proxy_port, self.echo = gateway, proxy_port, echo

    def task(self, scope: dict[str, Any] | None = None) -> TaskCredentials:
        ca = CertificateAuthority.load(self.gateway.workdir / ".ztgate" / "ca", SystemClock())
        key = ca.issue_x509_svid(AGENT).private_key
        return TaskCredentials(
            self.gateway.workdir, AGENT, key, scope=scope or {"tools": {"egress": {}}}
        )

    def headers(self, task: TaskCredentials, method: str = "CONNECT") -> bytes:
        proven = task.headers("egress", egress_arguments(method, "127.0.0.1", self.echo))
        lines = [f"Proxy-Authorization: Bearer {_token(self.gateway.workdir, AGENT)}"]
        lines += [f"{name}: {value}" for name, value in proven.items()]
        return "".join(f"{line}\r\n" for line in lines).encode()

    async def ask(self, head: bytes, then: bytes = b"") -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.proxy_port)
        writer.write(head)
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if then and answer.startswith(b"HTTP/1.1 200"):
            writer.write(then)
            await writer.drain()
        answer += await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return answer

    def connect(self, task: TaskCredentials) -> bytes:
        return f"CONNECT 127.0.0.1:{self.echo} HTTP/1.1\r\n".encode() + self.headers(task) + b"\r\n"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory, echo: int) -> Iterator[Proxied]:
    workdir = tmp_path_factory.mktemp("egress-agents")
    port = free_port()
    section = f"[egress_proxy]\nenabled = true\nport = {port}\n"
    section += f'agent_test_destinations = ["127.0.0.1:{echo}"]\n'
    make_settings(workdir, gateway_toml([], gateway={"authentication": "required"}) + section)
    _register(workdir, AGENT)
    process = GatewayProcess(workdir)
    process.start()
    try:
        yield Proxied(process, port, echo)
    finally:
        process.stop()


GET = b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


async def test_a_proven_connection_goes_through_and_is_the_tasks_on_record(
    proxied: Proxied,
) -> None:
    task = proxied.task()
    answer = await proxied.ask(proxied.connect(task), then=GET)
    assert answer.startswith(b"HTTP/1.1 200 Connection established"), answer
    assert b"HTTP/1.0 200" in answer or b"HTTP/1.1 200 OK" in answer
    database = load_settings(proxied.gateway.config).open_database()
    try:
        opened = [r for r in egress_records(database) if r["detail"]["event"] == "open"]
    finally:
        database.dispose()
    assert opened[-1]["agent"] == AGENT and opened[-1]["task_id"] == task.task_id
    assert "enclave" not in opened[-1]["detail"]


async def test_one_proof_one_connection(proxied: Proxied) -> None:
    head = proxied.connect(proxied.task())
    assert (await proxied.ask(head, then=GET)).startswith(b"HTTP/1.1 200")
    replayed = await proxied.ask(head)
    assert replayed.startswith(b"HTTP/1.1 403") and b"replay" in replayed


async def test_a_proof_for_another_destination_is_refused(proxied: Proxied) -> None:
    task = proxied.task()
    head = f"CONNECT 127.0.0.1:{proxied.echo + 1} HTTP/1.1\r\n".encode()  # not what it signed
    answer = await proxied.ask(head + proxied.headers(task) + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 403") and b"proof" in answer


async def test_without_credentials_407_and_with_a_foreign_token_407(proxied: Proxied) -> None:
    bare = f"CONNECT 127.0.0.1:{proxied.echo} HTTP/1.1\r\n\r\n".encode()
    answer = await proxied.ask(bare)
    assert answer.startswith(b"HTTP/1.1 407") and b"Bearer" in answer
    forged = bare[:-2] + b"Proxy-Authorization: Bearer not.a.jwt\r\n\r\n"
    assert (await proxied.ask(forged)).startswith(b"HTTP/1.1 407")


async def test_a_task_that_does_not_grant_egress_gets_none(proxied: Proxied) -> None:
    task = proxied.task({"tools": {"lookup": {}}})
    answer = await proxied.ask(proxied.connect(task))
    assert answer.startswith(b"HTTP/1.1 403") and b"scope" in answer
    # The refusal is the agent's and the task's on record (the checks proved them).
    database = load_settings(proxied.gateway.config).open_database()
    try:
        refused = [r for r in egress_records(database) if r["detail"]["event"] == "deny"]
    finally:
        database.dispose()
    assert refused[-1]["agent"] == AGENT and refused[-1]["task_id"] == task.task_id


async def test_the_tasks_domains_hold(proxied: Proxied) -> None:
    limits = {"/host": {"domains": ["api.example.com"]}}
    task = proxied.task({"tools": {"egress": {"limits": limits}}})
    answer = await proxied.ask(proxied.connect(task))
    assert answer.startswith(b"HTTP/1.1 403") and b"scope" in answer


async def test_the_warrant_and_proof_never_reach_the_destination(proxied: Proxied) -> None:
    task = proxied.task()
    head = (
        f"GET http://127.0.0.1:{proxied.echo}/page HTTP/1.1\r\nHost: 127.0.0.1:{proxied.echo}\r\n"
    ).encode() + proxied.headers(task, method="GET")
    answer = await proxied.ask(head + b"\r\n")
    assert b" 200 " in answer.split(b"\r\n", 1)[0], answer
    body = answer.split(b"\r\n\r\n", 1)[1]
    assert b"host" in body and b"ztgate" not in body and b"proxy-authorization" not in body


async def test_an_agents_httpx_client_goes_through_with_the_sdks_transport(
    proxied: Proxied,
) -> None:
    task = proxied.task()

    async def headers_for(host: str, port: int) -> dict[str, str]:
        proven = task.headers("egress", egress_arguments("CONNECT", host, port))
        bearer = {"Proxy-Authorization": f"Bearer {_token(proxied.gateway.workdir, AGENT)}"}
        return {**bearer, **proven}

    transport = EgressTransport(("127.0.0.1", proxied.proxy_port), headers_for)
    async with httpx.AsyncClient(transport=transport) as client:
        pages = [await client.get(f"http://127.0.0.1:{proxied.echo}/{n}") for n in range(2)]
    assert [page.status_code for page in pages] == [200, 200]
    assert "ztgate" not in pages[0].text and "host" in pages[0].text
