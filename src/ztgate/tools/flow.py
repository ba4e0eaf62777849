"""A tool's information-flow settings: which of its results to trust, whether it sends data out.

In JSON (the `flow` of a tool, in `[[tools]]` or `ztgate tools add --flow`):

    {"trusted": false,
     "record_fields": ["/messages/*/from", "/messages/*/id"],
     "content_fields": ["/messages/*/body"],
     "egress": true,
     "arguments": {"/recipient": "steering", "/notes": "content"}}

- `trusted`: the tool's results are a system of record as a whole (default:
  untrusted, third-party content).
- `record_fields` / `content_fields`: result fields that are a system of
  record (trusted) or third-party content (untrusted), whatever `trusted`
  says. Patterns are JSON Pointers in which `*` stands for any one key or
  index; a pattern covers everything below it; the longest matching pattern
  wins, and content wins a tie.
- `egress`: the tool sends data out of the organisation (outbound DLP
  applies). Unset: `write` and `critical` tools do, `read` tools do not.
- `arguments`: how the provenance guard reads an argument: `steering` (the
  whole value directs the action: a recipient, an account), `content` (free
  text: only the addresses inside it count) or `untracked`. Unset: by shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ztgate.errors import InvalidInputError

STEERING = "steering"
CONTENT = "content"
UNTRACKED = "untracked"
ROLES = (STEERING, CONTENT, UNTRACKED)
WILDCARD = "*"
MAX_PATTERNS = 64
_KEYS = frozenset({"trusted", "record_fields", "content_fields", "egress", "arguments"})
_EMPTY: Mapping[str, str] = MappingProxyType({})


def parse_pattern(pattern: Any, what: str) -> tuple[str, ...]:
    """The tokens of a JSON Pointer pattern (`*`: any one key or index).

    Raises:
        InvalidInputError: not a JSON Pointer.
    """
    if not isinstance(pattern, str) or not pattern.startswith("/") or len(pattern) > 512:
        raise InvalidInputError(f"{what}: {pattern!r} is not a JSON Pointer such as /items/*/id")
    tokens = pattern.split("/")[1:]
    for token in tokens:
        if "~" in token.replace("~0", "").replace("~1", ""):
            raise InvalidInputError(f"{what}: {pattern!r} is not a valid JSON Pointer")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in tokens)


def covers(tokens: Sequence[str], path: Sequence[str]) -> bool:
    """True if the pattern `tokens` names `path` or a field above it."""
    if len(tokens) > len(path):
        return False
    return all(t in (WILDCARD, p) for t, p in zip(tokens, path, strict=False))


@dataclass(frozen=True, slots=True)
class ToolFlow:
    """How data flows through one tool (see the module's docstring).

    Raises:
        InvalidInputError: any field is invalid.
    """

    trusted: bool = False
    record_fields: tuple[str, ...] = ()
    content_fields: tuple[str, ...] = ()
    egress: bool | None = None
    arguments: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        if not isinstance(self.trusted, bool):
            raise InvalidInputError("flow.trusted must be true or false")
        if self.egress is not None and not isinstance(self.egress, bool):
            raise InvalidInputError("flow.egress must be true or false")
        for name in ("record_fields", "content_fields"):
            patterns = getattr(self, name)
            if not isinstance(patterns, tuple) or len(patterns) > MAX_PATTERNS:
                raise InvalidInputError(f"flow.{name} is a list of at most {MAX_PATTERNS} pointers")
            for pattern in patterns:
                parse_pattern(pattern, f"flow.{name}")
        if not isinstance(self.arguments, Mapping) or len(self.arguments) > MAX_PATTERNS:
            raise InvalidInputError(
                f"flow.arguments maps at most {MAX_PATTERNS} pointers to a role"
            )
        for pattern, role in self.arguments.items():
            parse_pattern(pattern, "flow.arguments")
            if role not in ROLES:
                raise InvalidInputError(
                    f"flow.arguments: {pattern}: the role is one of {', '.join(ROLES)}"
                )

    def sends_out(self, risk: str) -> bool:
        """True if calls of this tool (of risk tier `risk`) send data out."""
        return self.egress if self.egress is not None else risk in ("write", "critical")

    def to_json(self) -> dict[str, Any]:
        """The set fields, as JSON."""
        document: dict[str, Any] = {}
        if self.trusted:
            document["trusted"] = True
        if self.record_fields:
            document["record_fields"] = list(self.record_fields)
        if self.content_fields:
            document["content_fields"] = list(self.content_fields)
        if self.egress is not None:
            document["egress"] = self.egress
        if self.arguments:
            document["arguments"] = dict(sorted(self.arguments.items()))
        return document

    @classmethod
    def from_json(cls, value: Any) -> ToolFlow | None:
        """Parse a flow's JSON form; None for none (or an empty one).

        Raises:
            InvalidInputError: not an object, an unknown key, or an invalid value.
        """
        if value is None or isinstance(value, ToolFlow):
            return value
        if not isinstance(value, Mapping):
            raise InvalidInputError("flow must be a JSON object")
        unknown = sorted(set(value) - _KEYS)
        if unknown:
            raise InvalidInputError(
                f"flow: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})"
            )
        arguments = value.get("arguments", {})
        if not isinstance(arguments, Mapping):
            raise InvalidInputError("flow.arguments maps pointers to a role")
        flow = cls(
            trusted=value.get("trusted", False),
            record_fields=_patterns(value.get("record_fields", []), "record_fields"),
            content_fields=_patterns(value.get("content_fields", []), "content_fields"),
            egress=value.get("egress"),
            arguments=MappingProxyType(dict(arguments)),
        )
        return flow if flow.to_json() else None


def _patterns(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidInputError(f"flow.{name} is a list of JSON Pointers")
    return tuple(value)
