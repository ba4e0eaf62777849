"""A test kit for ztgate and for code built on it: clocks, calls, tools, settings.

Shipped in the package (as mitmproxy ships `tflow`) so that plugins and
integrations can test their checks the way ztgate tests its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ztgate.canonical import canonical_json
from ztgate.config import Settings, load_settings
from ztgate.models import Credentials, ToolCall
from ztgate.tools.model import RiskTier, Tool


class FrozenClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self._now = now
        self._monotonic = 1000.0

    def now(self) -> float:
        """The frozen wall-clock time."""
        return self._now

    def monotonic(self) -> float:
        """The frozen monotonic time."""
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by `seconds`."""
        self._now += seconds
        self._monotonic += seconds

    def set(self, now: float) -> None:
        """Jump the wall clock to `now` (the monotonic clock does not move)."""
        self._now = now


def make_call(
    tool: str = "echo",
    arguments: Mapping[str, Any] | None = None,
    *,
    call_id: str = "call-1",
    justification: str = "testing",
    agent: str | None = None,
    task_id: str | None = None,
    credentials: Credentials | None = None,
    received_at: float = 1_800_000_000.0,
) -> ToolCall:
    """A `ToolCall` with its canonical argument hash filled in."""
    args = dict(arguments or {})
    return ToolCall(
        call_id=call_id,
        tool=tool,
        arguments=args,
        canonical_arguments=canonical_json(args),
        justification=justification,
        agent=agent,
        task_id=task_id,
        credentials=credentials or Credentials(),
        received_at=received_at,
    )


def make_tool(
    name: str = "echo",
    *,
    url: str = "http://127.0.0.1:9/echo",
    schema: Mapping[str, Any] | None = None,
    risk: RiskTier = RiskTier.READ,
    output_schema: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Tool:
    """A `Tool` with an open object schema unless one is given."""
    return Tool(
        name=name,
        upstream_url=url,
        input_schema=schema or {"type": "object"},
        risk=risk,
        output_schema=output_schema,
        **extra,
    )


def make_settings(directory: Path, toml: str = "", *, init: bool = True) -> Settings:
    """Settings rooted in `directory` (a config file holding `toml`), initialised.

    With `init`, the data directory, audit keys and database are created as
    `ztgate init` would.
    """
    config = directory / "ztgate.toml"
    config.write_text(toml, encoding="utf-8")
    if init:
        from ztgate.cli.init import initialise

        initialise(config, demo=False, force=False)
    return load_settings(config)
