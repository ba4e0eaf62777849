from __future__ import annotations

import httpx
import orjson
import pytest

from ztgate.sdk.errors import CallDenied, CallFailed, TransportError
from ztgate.sdk.models import Grant
from ztgate.sdk.principal import Principal

from .conftest import AGENT, SCOPE, problem

KEY = "ztg_0123456789abcdef_" + "x" * 43


def _principal(handler: object) -> Principal:
    return Principal("http://127.0.0.1:8470", KEY, transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def test_create_task() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        task = {"id": "t1", "agent": AGENT, "state": "active"}
        return httpx.Response(201, json={"task": task, "warrant_id": "w1", "warrant": None})

    with _principal(handler) as principal:
        created = principal.create_task(
            agent=AGENT, intent="reply", scope=SCOPE, budget_calls=5, expires_in_seconds=60
        )
        assert (created.task_id, created.warrant_id, created.grant) == ("t1", "w1", Grant("t1"))
        assert created.task["state"] == "active"
        principal.create_task(agent=AGENT, intent="minimal", scope=SCOPE)
    first, second = seen
    assert (first.method, first.url.path) == ("POST", "/v1/tasks")
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert orjson.loads(first.content) == {
        "agent": AGENT,
        "intent": "reply",
        "scope": SCOPE,
        "budget": {"calls": 5},
        "expires_in_seconds": 60,
    }
    assert orjson.loads(second.content) == {"agent": AGENT, "intent": "minimal", "scope": SCOPE}


def test_task_lifecycle_paths() -> None:
    seen: list[tuple[str, str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.raw_path.decode(), request.content))
        return httpx.Response(200, json={"ok": True})

    with _principal(handler) as principal:
        assert principal.task("t/1") == {"ok": True}
        principal.complete_task("t1")
        principal.revoke_task("t1", reason="done with it")
        principal.revoke_warrant("w1")
    assert [(m, p) for m, p, _ in seen] == [
        ("GET", "/v1/tasks/t%2F1"),
        ("POST", "/v1/tasks/t1/complete"),
        ("POST", "/v1/tasks/t1/revoke"),
        ("POST", "/v1/warrants/w1/revoke"),
    ]
    assert orjson.loads(seen[2][2]) == {"reason": "done with it"}


def test_errors() -> None:
    cases = [
        (problem(422, "scope: bad"), CallFailed, "scope: bad"),
        (problem(403, "lacks the 'tasks' role"), CallDenied, "role"),
        (httpx.Response(201, json={"task": {}}), TransportError, "no task"),
    ]
    for response, kind, match in cases:
        with (
            _principal(lambda request, r=response: r) as principal,
            pytest.raises(kind, match=match),
        ):
            principal.create_task(agent=AGENT, intent="x", scope=SCOPE)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with _principal(refused) as principal, pytest.raises(TransportError):
        principal.task("t1")
