"""The evaluation's tool server: one path per tool, run by a Python function, over real HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from ztgate.evaluation.upstream import ToolServer


def _handler(tool: str, arguments: Mapping[str, Any]) -> Any:
    if tool == "fail":
        raise ValueError("no such file")
    return {"tool": tool, "arguments": dict(arguments)}


def test_a_call_runs_the_function_and_answers_its_result() -> None:
    with ToolServer(_handler) as server:
        answer = httpx.post(f"{server.url}/read_file", json={"path": "a.txt"}, timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"result": {"tool": "read_file", "arguments": {"path": "a.txt"}}}
    assert server.calls == [("read_file", {"path": "a.txt"})]


def test_the_function_s_error_is_its_answer() -> None:
    with ToolServer(_handler) as server:
        answer = httpx.post(f"{server.url}/fail", json={}, timeout=5)
    assert answer.json() == {"error": "ValueError: no such file"}


def test_not_json_or_not_an_object_is_refused() -> None:
    with ToolServer(_handler) as server:
        bad = httpx.post(f"{server.url}/x", content=b"{", timeout=5)
        listed = httpx.post(f"{server.url}/x", json=[1], timeout=5)
    assert bad.status_code == 400
    assert listed.json() == {"error": "the arguments must be a JSON object"}
    assert server.calls == []


def test_it_listens_on_loopback_only() -> None:
    with ToolServer(_handler) as server:
        assert server.url.startswith("http://127.0.0.1:")
