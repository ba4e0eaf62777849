"""The HTTP front door over a real gateway and a real upstream on loopback.

Both ASGI applications are exercised: `create_asgi` (the fast call path over
the FastAPI app, what the server runs) and `create_app` (the FastAPI route
alone, what OpenAPI documents). They must answer every request alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from starlette.types import ASGIApp, Message

from ztgate.audit.reader import AuditReader
from ztgate.cli.toml import array_of_tables, value
from ztgate.gateway import Gateway
from ztgate.http.app import create_app, create_asgi
from ztgate.http.body import CallRequest
from ztgate.testing import make_settings

PROBLEM = "application/problem+json"
MAX_BODY = 1024
QUERY = {
    "type": "object",
    "properties": {"q": {"type": "string"}},
    "required": ["q"],
    "additionalProperties": False,
}
TRACEBACK_SIGNS = ("Traceback (most recent call last)", 'File "/', "site-packages", '.py"')


@dataclass
class Upstream:
    base: str = ""
    call_ids: list[str | None] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()

    async def echo(request: web.Request) -> web.Response:
        server.call_ids.append(request.headers.get("X-Ztgate-Call-Id"))
        return web.json_response({"echo": await request.json()})

    async def fail(request: web.Request) -> web.Response:
        server.call_ids.append(request.headers.get("X-Ztgate-Call-Id"))
        return web.json_response({"error": "boom"}, status=500)

    async def slow(request: web.Request) -> web.Response:
        server.call_ids.append(request.headers.get("X-Ztgate-Call-Id"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.release.wait(), 30)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/fail", fail)
    app.router.add_post("/slow", slow)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


def config_toml(base: str) -> str:
    tools = [
        {"name": "lookup", "url": f"{base}/echo", "risk": "read", "input_schema": QUERY},
        {"name": "send", "url": f"{base}/echo", "risk": "write", "input_schema": QUERY},
        {"name": "fail", "url": f"{base}/fail", "risk": "read", "input_schema": {"type": "object"}},
        {
            "name": "slow",
            "url": f"{base}/slow",
            "risk": "read",
            "input_schema": {"type": "object"},
            "timeout_seconds": 0.2,
        },
    ]
    gateway = {"max_body_bytes": MAX_BODY, "max_json_depth": 8}
    return (
        '[gateway]\nauthentication = "off"\n'
        + "".join(f"{k} = {value(v)}\n" for k, v in gateway.items())
        + "[store]\nbusy_timeout_ms = 50\n\n"
        + array_of_tables("tools", tools)
    )


@pytest.fixture
async def gateway(tmp_path: Path, upstream: Upstream) -> AsyncIterator[Gateway]:
    gw = Gateway.from_settings(make_settings(tmp_path, config_toml(upstream.base)))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


@pytest.fixture
def db_path(gateway: Gateway) -> Path:
    return gateway.settings.path(gateway.settings.data_dir) / "ztgate.db"


@pytest.fixture
async def clients(gateway: Gateway) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A client of each application: "fast" (`create_asgi`) and "routed" (`create_app`)."""
    apps = {
        "fast": create_asgi(gateway),
        "routed": create_app(gateway, manage_lifecycle=False),
    }
    async with contextlib.AsyncExitStack() as stack:
        opened = {
            name: await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                    base_url="http://gateway",
                )
            )
            for name, app in apps.items()
        }
        yield opened


def records(gw: Gateway, call_id: str) -> list[dict[str, Any]]:
    return [
        body
        for record in AuditReader(gw.database).records(gw.audit.chain)
        for body in [orjson.loads(record.body)]
        if body.get("call_id") == call_id
    ]


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:ztgate:problem:{slug}"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    for sign in TRACEBACK_SIGNS:
        assert sign not in response.text
    return body


def normalised(response: httpx.Response) -> tuple[Any, ...]:
    body = response.json()
    for varying in ("call_id", "instance"):
        body.pop(varying, None)
    return (
        response.status_code,
        response.headers["content-type"],
        response.headers.get("allow"),
        body,
    )


JSON = {"content-type": "application/json"}
REQUESTS: dict[str, tuple[dict[str, str], bytes, int, str | None]] = {
    # name: (headers, body, status, problem slug)
    "allowed read": (JSON, b'{"tool": "lookup", "arguments": {"q": "a"}}', 200, None),
    "allowed write": (
        JSON,
        b'{"tool": "send", "arguments": {"q": "b"}, "justification": "the user asked"}',
        200,
        None,
    ),
    "unjustified write": (JSON, b'{"tool": "send", "arguments": {"q": "b"}}', 403, "call-denied"),
    "unknown tool": (JSON, b'{"tool": "rm_rf", "arguments": {}}', 403, "call-denied"),
    "bad arguments": (JSON, b'{"tool": "lookup", "arguments": {"q": 1}}', 403, "call-denied"),
    "malformed": (JSON, b'{"tool": "lookup", "arguments": {', 400, "malformed-json"),
    "empty": (JSON, b"", 400, "malformed-json"),
    "too deep": (
        JSON,
        b'{"tool": "x", "arguments": {"a": [[[[[[[[]]]]]]]]}}',
        400,
        "json-too-deep",
    ),
    "no canonical form": (JSON, b'{"tool": "x", "arguments": {"a": 1e400}}', 400, None),
    "not json": ({"content-type": "text/plain"}, b"{}", 415, "unsupported-media-type"),
    "latin-1": (
        {"content-type": "application/json; charset=latin-1"},
        b"{}",
        415,
        "unsupported-media-type",
    ),
    "too large": (JSON, b'{"tool": "' + b"x" * MAX_BODY + b'"}', 413, "body-too-large"),
    "unknown field": (JSON, b'{"tool": "lookup", "agent": "me"}', 422, "invalid-request"),
    "wrong type": (JSON, b'{"tool": "lookup", "arguments": []}', 422, "invalid-request"),
    "not an object": (JSON, b"[1, 2]", 422, "invalid-request"),
    "upstream fails": (JSON, b'{"tool": "fail", "arguments": {}}', 502, "upstream-failed"),
    "upstream too slow": (JSON, b'{"tool": "slow", "arguments": {}}', 504, "upstream-timeout"),
}


@pytest.mark.parametrize("name", list(REQUESTS))
async def test_the_fast_path_and_the_route_answer_alike_and_audit_each_answer(
    clients: dict[str, httpx.AsyncClient], gateway: Gateway, name: str
) -> None:
    headers, body, status, slug = REQUESTS[name]
    answers = {}
    for door, client in clients.items():
        response = await client.post("/v1/calls", content=body, headers=headers)
        assert response.status_code == status, (door, response.text)
        if status != 200:
            problem = assert_problem(response, status, slug or response.json()["type"][19:])
            assert problem["instance"] == problem["call_id"]
        call_id = response.json()["call_id"]
        assert records(gateway, call_id), f"{door}: no audit record for {name}"
        answers[door] = normalised(response)
    assert answers["fast"] == answers["routed"]


async def test_an_allowed_call_returns_the_result_and_every_verdict(
    clients: dict[str, httpx.AsyncClient], upstream: Upstream
) -> None:
    response = await clients["fast"].post(
        "/v1/calls", json={"tool": "lookup", "arguments": {"q": "lisbon"}, "justification": "j"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"call_id", "outcome", "result", "verdicts"}
    assert body["outcome"] == "allow"
    assert body["result"] == {"echo": {"q": "lisbon"}}
    assert [v["check"] for v in body["verdicts"]] == [
        "halt",
        "limits",
        "justification",
        "schema",
        "injection_seen",
        "pinning",
        "provenance",
        "dlp",
        "egress",
        "policy",
        "result_schema",
        "injection",
        "provenance_record",
    ]
    assert all(v["outcome"] == "allow" for v in body["verdicts"])
    assert upstream.call_ids == [body["call_id"]]


async def test_a_denied_call_lists_its_reasons(clients: dict[str, httpx.AsyncClient]) -> None:
    response = await clients["fast"].post("/v1/calls", json={"tool": "lookup", "arguments": {}})
    problem = assert_problem(response, 403, "call-denied")
    assert problem["outcome"] == "deny"
    assert problem["reasons"] == [
        {
            "check": "schema",
            "outcome": "deny",
            "reason": "arguments do not match the schema of 'lookup': "
            "at /: 'q' is a required property",
        }
    ]
    assert problem["detail"].startswith("schema: arguments do not match")


async def test_a_rejected_request_is_recorded_with_its_reason(
    clients: dict[str, httpx.AsyncClient], gateway: Gateway
) -> None:
    response = await clients["fast"].post("/v1/calls", content=b"{", headers=JSON)
    problem = assert_problem(response, 400, "malformed-json")
    (record,) = records(gateway, problem["call_id"])
    assert (record["kind"], record["outcome"], record["status"]) == ("rejected", "deny", 400)
    assert record["reasons"][0]["check"] == "edge"


@contextlib.contextmanager
def write_locked(db_path: Path) -> Iterator[None]:
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        conn.rollback()
        conn.close()


@pytest.mark.parametrize("door", ["fast", "routed"])
async def test_an_unwritable_audit_log_is_503_for_calls_and_rejections(
    clients: dict[str, httpx.AsyncClient], db_path: Path, upstream: Upstream, door: str
) -> None:
    client = clients[door]
    with write_locked(db_path):
        write = await client.post("/v1/calls", json={"tool": "send", "arguments": {"q": "x"}})
        read = await client.post("/v1/calls", json={"tool": "lookup", "arguments": {"q": "x"}})
        malformed = await client.post("/v1/calls", content=b"{", headers=JSON)
        ready = await client.get("/readyz")
    for response in (write, read, malformed):
        problem = assert_problem(response, 503, "store-unavailable")
        assert "result" not in problem and "echo" not in response.text
    assert_problem(ready, 503, "not-ready")
    assert len(upstream.call_ids) == 1  # the read ran; the write never did
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    recovered = await client.post("/v1/calls", json={"tool": "lookup", "arguments": {"q": "y"}})
    assert recovered.status_code == 200


# -- the rest of the API ---------------------------------------------------------


@pytest.mark.parametrize("door", ["fast", "routed"])
async def test_operations_endpoints(clients: dict[str, httpx.AsyncClient], door: str) -> None:
    client = clients[door]
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    await client.post("/v1/calls", json={"tool": "nope"})
    await client.post("/v1/calls", content=b"{", headers=JSON)
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'ztgate_decisions_total{check="schema",outcome="deny",phase="call"} 1.0' in text
    assert 'ztgate_rejected_requests_total{reason="malformed-json"} 1.0' in text
    assert 'ztgate_call_seconds_count{outcome="deny"} 1.0' in text


async def test_openapi_documents_the_call_route_and_problems(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    document = (await clients["fast"].get("/openapi.json")).json()
    assert document == (await clients["routed"].get("/openapi.json")).json()
    post = document["paths"]["/v1/calls"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema == CallRequest.model_json_schema()
    assert post["requestBody"]["required"] is True
    assert schema["required"] == ["tool"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"tool", "arguments", "justification"}
    ref = {"$ref": "#/components/schemas/Problem"}
    for status in ("400", "403", "413", "415", "422", "502", "503", "504"):
        assert post["responses"][status]["content"][PROBLEM]["schema"] == ref, status
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert {"call_id", "reasons", "instance"} <= set(problem["properties"])
    assert {"/healthz", "/readyz", "/metrics"} <= set(document["paths"])


@pytest.mark.parametrize("door", ["fast", "routed"])
async def test_an_unknown_path_is_a_404_problem(
    clients: dict[str, httpx.AsyncClient], door: str
) -> None:
    for method, path in (("GET", "/nope"), ("POST", "/v1/calls/extra"), ("POST", "/v2/calls")):
        response = await clients[door].request(method, path, content=b"{}", headers=JSON)
        assert_problem(response, 404, "http-error")


@pytest.mark.parametrize("door", ["fast", "routed"])
async def test_a_wrong_method_is_a_405_problem_with_allow(
    clients: dict[str, httpx.AsyncClient], door: str
) -> None:
    for method, path, allow in [
        ("GET", "/v1/calls", "POST"),
        ("PUT", "/v1/calls", "POST"),
        ("DELETE", "/v1/calls", "POST"),
        ("POST", "/healthz", "GET"),
    ]:
        response = await clients[door].request(method, path)
        assert_problem(response, 405, "http-error")
        assert response.headers["allow"] == allow, (method, path)


@pytest.mark.parametrize("door", ["fast", "routed"])
async def test_a_crash_inside_handling_is_a_500_problem_without_a_traceback(
    clients: dict[str, httpx.AsyncClient],
    gateway: Gateway,
    door: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def crash() -> str:
        raise RuntimeError("internal detail /srv/secret/path")

    gateway.ids = crash
    response = await clients[door].post("/v1/calls", json={"tool": "lookup"})
    problem = assert_problem(response, 500, "internal-error")
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert problem["detail"] == "the gateway could not complete the request"
    assert "internal detail" in caplog.text  # logged for the operator, not sent


@pytest.mark.parametrize("door", ["fast", "routed"])
async def test_a_gateway_error_while_stopping_is_a_500_problem(
    clients: dict[str, httpx.AsyncClient], gateway: Gateway, door: str
) -> None:
    await gateway.audit.stop()  # the audit log refuses appends from now on
    response = await clients[door].post("/v1/calls", json={"tool": "lookup"})
    assert_problem(response, 500, "internal-error")
    assert "audit" not in response.text


# -- lifespan --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run the ASGI lifespan protocol around the block, as a server does."""
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, to_app.get, from_app.put))  # type: ignore[arg-type]
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
        await task


async def test_the_app_starts_and_stops_the_gateway_with_its_lifespan(tmp_path: Path) -> None:
    gw = Gateway.from_settings(make_settings(tmp_path))
    app = create_asgi(gw)
    async with lifespan(app):
        assert gw._checkpointer is not None and not gw._checkpointer.done()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway"
        ) as client:
            response = await client.post("/v1/calls", json={"tool": "nothing"})
        assert response.status_code == 401  # authentication is required by default
        assert records(gw, response.json()["call_id"])
    assert gw._checkpointer.cancelled()


async def test_without_lifecycle_management_the_app_leaves_the_gateway_alone(
    tmp_path: Path,
) -> None:
    gw = Gateway.from_settings(make_settings(tmp_path))
    try:
        async with lifespan(create_app(gw, manage_lifecycle=False)):
            assert gw._checkpointer is None
        assert gw._checkpointer is None
    finally:
        gw.database.dispose()


def test_read_credentials_takes_a_bearer_token() -> None:
    from ztgate.http.app import read_credentials
    from ztgate.models import Credentials

    assert read_credentials(None) == Credentials()
    assert read_credentials("Bearer abc.def-_.ghi") == Credentials(bearer="abc.def-_.ghi")
    assert read_credentials("bearer  tok==") == Credentials(bearer="tok==")


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer a b", "Basic dXNlcjpw", "Bearer a,b"])
def test_read_credentials_refuses_a_malformed_header(header: str) -> None:
    from ztgate.http.app import read_credentials
    from ztgate.http.problems import Problem

    with pytest.raises(Problem) as caught:
        read_credentials(header)
    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_read_credentials_carries_the_client_chain() -> None:
    from ztgate.http.app import read_credentials
    from ztgate.models import Credentials

    assert read_credentials(None, b"\x30\x00") == Credentials(client_certificate=b"\x30\x00")
    assert read_credentials("Bearer tok", b"\x30\x00") == Credentials(
        bearer="tok", client_certificate=b"\x30\x00"
    )


def test_read_client_chain_reads_the_tls_extension_and_refuses_garbage() -> None:
    from ztgate.http.app import read_client_chain
    from ztgate.http.problems import Problem

    assert read_client_chain({"type": "http"}) is None
    with pytest.raises(Problem) as caught:
        read_client_chain({"extensions": {"tls": {"client_cert_chain": ["not PEM"]}}})
    assert caught.value.status == 401


async def test_a_rate_limited_call_is_429_with_retry_after(
    tmp_path: Path, upstream: Upstream
) -> None:
    tools = [
        {
            "name": "lookup",
            "url": f"{upstream.base}/echo",
            "risk": "read",
            "input_schema": QUERY,
            "limits": {"rate_per_second": 0.25, "burst": 2},
        }
    ]
    toml = '[gateway]\nauthentication = "off"\n\n' + array_of_tables("tools", tools)
    gw = Gateway.from_settings(make_settings(tmp_path, toml))
    await gw.start()
    try:
        transport = httpx.ASGITransport(app=create_asgi(gw))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            body = {"tool": "lookup", "arguments": {"q": "x"}}
            for _ in range(2):
                assert (await client.post("/v1/calls", json=body)).status_code == 200
            response = await client.post("/v1/calls", json=body)
        assert response.status_code == 429
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["retry-after"] == "4"  # whole seconds, rounded up
        problem = response.json()
        assert problem["type"] == "urn:ztgate:problem:rate-limited"
        assert problem["title"] == "Too many requests"
        assert 3.9 < problem["retry_after"] <= 4.0
        assert problem["reasons"][0]["check"] == "rate"
        assert "rate limit of tool lookup" in problem["detail"]
        (record,) = records(gw, problem["call_id"])
        assert (record["outcome"], record["status"]) == ("deny", 429)
    finally:
        await gw.stop()


async def test_the_console_is_served_under_console(gateway: Gateway) -> None:
    transport = httpx.ASGITransport(app=create_asgi(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="https://gateway") as client:
        root = await client.get("/console")
        assert root.status_code == 307 and root.headers["location"] == "/console/"
        login = await client.get("/console/login")
        assert login.status_code == 200 and 'id="login"' in login.text
        assert login.headers["x-frame-options"] == "DENY"
        script = await client.get("/console/static/console.js")
        assert script.status_code == 200 and "crypto.subtle" in script.text
        spec = (await client.get("/openapi.json")).json()
        assert not any(path.startswith("/console") for path in spec["paths"])


async def test_the_console_can_be_turned_off(tmp_path: Path, upstream: Upstream) -> None:
    toml = config_toml(upstream.base) + "\n[console]\nenabled = false\n"
    gw = Gateway.from_settings(make_settings(tmp_path, toml))
    transport = httpx.ASGITransport(app=create_app(gw, manage_lifecycle=False))
    async with httpx.AsyncClient(transport=transport, base_url="https://gateway") as client:
        assert (await client.get("/console/login")).status_code == 404
