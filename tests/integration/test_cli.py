"""The command line against a live gateway: tools added and removed while it runs,
`serve` refusing a non-loopback address, and `ztgate demo`."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from ztgate.testing import make_settings

from .harness import GatewayProcess, Upstream, assert_problem, run_cli


def test_tool_added_by_cli_is_callable_on_the_next_call(
    client: httpx.Client, gateway: GatewayProcess, upstream: Upstream
) -> None:
    name = f"live-{uuid.uuid4().hex[:12]}"
    call = {"tool": name, "arguments": {"x": 1}}

    before = client.post("/v1/calls", json=call)
    assert_problem(before, 403)
    assert f"unknown tool {name!r}" in before.json()["detail"]

    schema = json.dumps({"type": "object", "properties": {"x": {"type": "integer"}}})
    added = gateway.cli(
        "tools", "add", name, "--url", f"{upstream.url}/echo/cli", "--schema", schema
    )
    assert added.returncode == 0, added.stderr
    listed = gateway.cli("tools", "list", "--json")
    assert name in {tool["name"] for tool in json.loads(listed.stdout)}

    response = client.post("/v1/calls", json=call)
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {"echo": {"x": 1}}
    # Its schema holds from the first call too.
    assert_problem(client.post("/v1/calls", json={"tool": name, "arguments": {"x": "1"}}), 403)

    removed = gateway.cli("tools", "remove", name)
    assert removed.returncode == 0, removed.stderr

    after = client.post("/v1/calls", json=call)
    problem = assert_problem(after, 403)
    assert f"unknown tool {name!r}" in problem["detail"]
    assert gateway.audit_records(problem["call_id"])[0]["outcome"] == "deny"
    calls_to_tool = [c for c in upstream.received("/echo/cli") if c["arguments"] == {"x": 1}]
    assert response.json()["call_id"] in {c["call_id"] for c in calls_to_tool}
    assert after.json()["call_id"] not in {c["call_id"] for c in calls_to_tool}
    gateway.verify_audit()


def test_tool_replaced_by_cli_takes_effect_on_the_next_call(
    client: httpx.Client, gateway: GatewayProcess, upstream: Upstream
) -> None:
    name = f"swap-{uuid.uuid4().hex[:12]}"
    open_schema = json.dumps({"type": "object"})
    strict_schema = json.dumps({"type": "object", "additionalProperties": False})
    try:
        done = gateway.cli(
            "tools", "add", name, "--url", f"{upstream.url}/echo/cli", "--schema", open_schema
        )
        assert done.returncode == 0, done.stderr
        call = {"tool": name, "arguments": {"anything": True}}
        assert client.post("/v1/calls", json=call).status_code == 200
        done = gateway.cli(
            "tools",
            "add",
            name,
            "--replace",
            "--url",
            f"{upstream.url}/echo/cli",
            "--schema",
            strict_schema,
        )
        assert done.returncode == 0, done.stderr
        problem = assert_problem(client.post("/v1/calls", json=call), 403)
        assert "at /: 1 unexpected property" in problem["detail"]
    finally:
        gateway.cli("tools", "remove", name)


def _serve(tmp_path: Path, *args: str, **env: str) -> tuple[int, str, str]:
    make_settings(tmp_path, '[gateway]\nport = 0\nauthentication = "off"\n')
    done = run_cli(tmp_path / "ztgate.toml", "serve", *args, timeout=30, **env)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(
    ("args", "env"),
    [
        ((), {"ZTGATE_GATEWAY__HOST": "0.0.0.0"}),
        (("--host", "::"), {}),
        (("--host", "example.com"), {}),
    ],
    ids=["env-any-v4", "option-any-v6", "option-name"],
)
def test_serve_refuses_a_non_loopback_host(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    code, stdout, stderr = _serve(tmp_path, *args, **env)
    assert code != 0
    assert "Traceback" not in stdout + stderr
    assert "refusing to listen" in stderr
    assert "loopback" in stderr
    assert "Uvicorn running" not in stdout + stderr


def test_serve_refusal_is_one_line(tmp_path: Path) -> None:
    # `main()` promises "one line on stderr" for any error. Rich wraps at the
    # console width (80 columns when stderr is not a terminal, as under systemd).
    code, _stdout, stderr = _serve(tmp_path, ZTGATE_GATEWAY__HOST="0.0.0.0", COLUMNS="80")
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line error, got {len(lines)} lines:\n{stderr}"
    assert lines[0].startswith("ztgate: error:")
    assert lines[0].rstrip().endswith("localhost)")


def test_demo_exits_zero(tmp_path: Path) -> None:
    done = run_cli(tmp_path / "ztgate.toml", "demo", timeout=90)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "demo finished as expected" in done.stdout
    assert "verifies" in done.stdout
