"""Fixtures for the policy tests: tools, policy directories and loaded sets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from ztgate.policy import loader
from ztgate.policy.model import AgentFacts, CallFacts, PolicySnapshot
from ztgate.testing import make_tool
from ztgate.tools.model import RiskTier, Tool

AGENT = AgentFacts("spiffe://ztgate.local/agent/a", "ztgate.local", True, "alice")
NOW = 1_800_000_000.0


def tools() -> list[Tool]:
    """A read, a write and a critical tool with typed arguments."""
    return [
        make_tool(
            "lookup",
            risk=RiskTier.READ,
            url="https://search.example/q",
            schema={"type": "object", "properties": {"q": {"type": "string"}}},
        ),
        make_tool(
            "send",
            risk=RiskTier.WRITE,
            url="https://mail.internal/send",
            schema={
                "type": "object",
                "properties": {
                    "to": {"type": "string"},
                    "cc": {"type": "array", "items": {"type": "string"}},
                    "urgent": {"type": "boolean"},
                },
                "required": ["to"],
            },
        ),
        make_tool(
            "pay",
            risk=RiskTier.CRITICAL,
            url="https://bank.internal/pay",
            schema={
                "type": "object",
                "properties": {
                    "amount": {"type": "integer"},
                    "fee": {"type": "number"},
                    "memo": {},
                },
                "required": ["amount"],
            },
        ),
    ]


def call(
    tool: str = "lookup", arguments: dict[str, object] | None = None, **fields: object
) -> CallFacts:
    """A call's facts: by the test agent, in scope, unless `fields` say otherwise."""
    values: dict[str, object] = {"agent": AGENT, "in_scope": True, "now": NOW}
    values.update(fields)
    return CallFacts(tool=tool, arguments=arguments or {}, **values)  # type: ignore[arg-type]


Load = Callable[..., PolicySnapshot]


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    return directory


@pytest.fixture
def load(policy_dir: Path) -> Load:
    """Write `text` as policy_dir/main.cedar (and `files`) and load it for `tools()`."""

    def write_and_load(
        text: str | None = None,
        *,
        files: dict[str, str] | None = None,
        with_tools: Sequence[Tool] | None = None,
    ) -> PolicySnapshot:
        if text is not None:
            (policy_dir / "main.cedar").write_text(text, encoding="utf-8")
        for name, body in (files or {}).items():
            (policy_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (policy_dir / name).write_text(body, encoding="utf-8")
        return loader.load(loader.read(policy_dir), tools() if with_tools is None else with_tools)

    return write_and_load
