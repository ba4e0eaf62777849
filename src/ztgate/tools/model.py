"""A registered tool, parsed and validated at construction."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ztgate.errors import InvalidInputError
from ztgate.tools.flow import ToolFlow
from ztgate.tools.pins import fingerprint

# ASCII only: a name is compared byte for byte, so look-alike letters from
# other scripts (homoglyphs) and width variants cannot name a different tool.
_TOOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


class RiskTier(Enum):
    """How much harm a tool can do: reads, writes, or critical actions."""

    READ = "read"
    WRITE = "write"
    CRITICAL = "critical"


class ToolName(str):
    """A tool name: 1-128 ASCII letters, digits and `_ . : -`, starting alphanumeric."""

    __slots__ = ()

    def __new__(cls, value: str) -> ToolName:
        """Validate `value`.

        Raises:
            InvalidInputError: not a valid tool name.
        """
        if not isinstance(value, str) or not _TOOL_NAME.fullmatch(value):
            raise InvalidInputError(
                f"invalid tool name {value!r}: use 1-128 ASCII letters, digits, '_', '.', ':'"
                " or '-', starting with a letter or digit"
            )
        return super().__new__(cls, value)


def validate_upstream_url(url: str) -> str:
    """Return `url` if it is an absolute http(s) URL with a host.

    Raises:
        InvalidInputError: anything else.
    """
    parts = urlsplit(url)
    if parts.scheme == "mcp":
        # A tool of an MCP upstream server: mcp://<server>/<tool> (ztgate.mcp.upstream).
        if not parts.hostname or len(parts.path) < 2 or parts.query or parts.fragment:
            raise InvalidInputError(f"an MCP tool's URL is mcp://<server>/<tool>: {url!r}")
        return url
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidInputError(f"upstream URL must be http:// or https:// with a host: {url!r}")
    if parts.username or parts.password:
        raise InvalidInputError("upstream URL must not carry credentials")
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidInputError(f"upstream URL has an invalid port: {url!r}") from exc
    if port == 0:
        raise InvalidInputError(f"upstream URL has an invalid port: {url!r}")
    return url


def validate_json_schema(schema: Any, what: str) -> Mapping[str, Any]:
    """Return `schema` if it is a valid JSON Schema (Draft 2020-12) for an object.

    Raises:
        InvalidInputError: not a schema, invalid, or not describing an object.
    """
    if not isinstance(schema, Mapping):
        raise InvalidInputError(f"{what} must be a JSON object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidInputError(f"{what} is not a valid JSON Schema: {exc.message}") from exc
    if schema.get("type") != "object":
        raise InvalidInputError(f'{what} must have "type": "object"')
    return schema


_LIMIT_KEYS = frozenset({"rate_per_second", "burst", "cost", "cost_argument"})


@dataclass(frozen=True, slots=True)
class ToolLimits:
    """A tool's own containment settings (see docs/containment.md).

    `rate_per_second` and `burst`: the token bucket of this tool, shared by
    all its callers, instead of `[limits] tool`. `cost` and `cost_argument`:
    what one call spends from a task's spend budget, a fixed amount plus the
    number found at `cost_argument` (a JSON Pointer such as `/amount`, or a
    top-level argument name).

    Raises:
        InvalidInputError: any field is invalid.
    """

    rate_per_second: float | None = None
    burst: int | None = None
    cost: float = 0.0
    cost_argument: str | None = None

    def __post_init__(self) -> None:
        rate = self.rate_per_second
        if rate is not None and (not _is_number(rate) or not 0 < rate <= 1e6):
            raise InvalidInputError("limits.rate_per_second must be a number above 0, up to 1e6")
        if self.burst is not None:
            if rate is None:
                raise InvalidInputError("limits.burst needs limits.rate_per_second")
            if isinstance(self.burst, bool) or not isinstance(self.burst, int):
                raise InvalidInputError("limits.burst must be a whole number")
            if not 1 <= self.burst <= 1_000_000:
                raise InvalidInputError("limits.burst must be between 1 and 1000000")
        if not _is_number(self.cost) or not 0 <= self.cost <= 1e12:
            raise InvalidInputError("limits.cost must be a number from 0 up to 1e12")
        pointer = self.cost_argument
        if pointer is not None and (
            not isinstance(pointer, str) or not 0 < len(pointer) <= 256 or pointer == "/"
        ):
            raise InvalidInputError(
                "limits.cost_argument must be a JSON Pointer (/amount) or an argument name"
            )

    @property
    def bucket_burst(self) -> float | None:
        """The tool bucket's capacity (the rate rounded up, at least 1, unless `burst` is set)."""
        if self.rate_per_second is None:
            return None
        return float(self.burst or max(1, math.ceil(self.rate_per_second)))

    def to_json(self) -> dict[str, Any]:
        """The set fields, as JSON."""
        document: dict[str, Any] = {
            "rate_per_second": self.rate_per_second,
            "burst": self.burst,
            "cost": self.cost or None,
            "cost_argument": self.cost_argument,
        }
        return {key: value for key, value in document.items() if value is not None}

    @classmethod
    def from_json(cls, value: Any) -> ToolLimits | None:
        """Parse `{"rate_per_second", "burst", "cost", "cost_argument"}`; None for none.

        Raises:
            InvalidInputError: not an object, an unknown key, or an invalid value.
        """
        if value is None:
            return None
        if isinstance(value, ToolLimits):
            return value
        if not isinstance(value, Mapping):
            raise InvalidInputError("limits must be a JSON object")
        unknown = sorted(set(value) - _LIMIT_KEYS)
        if unknown:
            raise InvalidInputError(
                f"limits: unknown key {unknown[0]!r} (known: {', '.join(sorted(_LIMIT_KEYS))})"
            )
        limits = cls(**value)
        return limits if limits.to_json() else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool agents may call through the gateway.

    Raises:
        InvalidInputError: any field is invalid.
    """

    name: str
    upstream_url: str
    input_schema: Mapping[str, Any]
    risk: RiskTier = RiskTier.WRITE
    description: str = ""
    output_schema: Mapping[str, Any] | None = None
    timeout_seconds: float | None = None
    limits: ToolLimits | None = None
    # Trusted result fields, egress (tools/flow.py); the approved fingerprint (tools/pins.py).
    flow: ToolFlow | None = None
    pin_sha256: str | None = None
    enabled: bool = True
    source: str = "cli"
    created_at: float = 0.0
    updated_at: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ToolName(self.name)
        validate_upstream_url(self.upstream_url)
        validate_json_schema(self.input_schema, "input schema")
        if self.output_schema is not None:
            validate_json_schema(self.output_schema, "output schema")
        if not isinstance(self.risk, RiskTier):
            raise InvalidInputError(f"risk must be one of read, write, critical: {self.risk!r}")
        if self.timeout_seconds is not None and not 0 < self.timeout_seconds <= 3600:
            raise InvalidInputError("timeout must be between 0 and 3600 seconds")
        if len(self.description) > 8192:
            raise InvalidInputError("description is longer than 8192 characters")
        if self.limits is not None and not isinstance(self.limits, ToolLimits):
            raise InvalidInputError("limits must be a ToolLimits")
        if self.flow is not None and not isinstance(self.flow, ToolFlow):
            raise InvalidInputError("flow must be a ToolFlow")

    @property
    def fingerprint(self) -> str:
        """The SHA-256 of the description and schemas (what pinning approves)."""
        return fingerprint(self.description, self.input_schema, self.output_schema)

    @property
    def pinned(self) -> bool:
        """True if a principal approved exactly this description and these schemas."""
        return self.pin_sha256 is not None and self.pin_sha256 == self.fingerprint


def parse_risk(value: str) -> RiskTier:
    """Parse a risk tier name.

    Raises:
        InvalidInputError: not `read`, `write` or `critical`.
    """
    try:
        return RiskTier(value)
    except ValueError as exc:
        raise InvalidInputError(f"risk must be one of read, write, critical: {value!r}") from exc
