"""A task's scope: the tools an agent may call for it, and the limits on their arguments.

In JSON (how principals write it and how warrants carry it):

    {"tools": {
        "send_email": {"limits": {
            "/to":      {"domains": ["acme.example", "*.acme.example"]},
            "/subject": {"pattern": "[^\\r\\n]{1,200}"},
            "/amount":  {"minimum": 0, "maximum": 100, "required": true},
            "/urgency": {"enum": ["low", "normal"]}}},
        "search": {}}}

A limit's key is a JSON Pointer (RFC 6901) into the arguments; a bare name
means the top-level argument of that name. Kinds:

- `enum`: the value is one of these JSON values (compared in canonical form).
- `pattern`: a regular expression (or a list of them) the whole string must match.
- `minimum` / `maximum`: inclusive bounds on a number.
- `domains`: the destination host (of a URL, an e-mail address or a bare
  host name) is one of these names, or under a `*.` wildcard's domain.
- `required`: the argument must be present (otherwise an absent argument
  passes, and the tool's own schema decides).

A limit applies to each element when the value is an array. A value the
limit cannot apply to (an object, a string where a number is expected) fails
it: scope checks fail closed. A denial names the argument and the limit,
never the value (values reach the audit log).

Delegation narrows with `narrow`: the child may drop tools, add limits and
tighten them, and nothing else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from ztgate.canonical import canonical_json
from ztgate.errors import InvalidInputError

MAX_TOOLS = 256
MAX_LIMITS = 64
MAX_ENUM = 256
MAX_PATTERN_CHARS = 1000
MAX_DOMAINS = 256
_KINDS = frozenset({"enum", "pattern", "minimum", "maximum", "domains", "required"})
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class Limit:
    """The limits on one argument (every one present must hold)."""

    pointer: str
    enum: tuple[bytes, ...] | None = None  # canonical JSON of each allowed value
    enum_values: tuple[Any, ...] | None = None
    patterns: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    domains: tuple[str, ...] | None = None
    required: bool = False
    _compiled: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The limit in its JSON form."""
        out: dict[str, Any] = {}
        if self.enum_values is not None:
            out["enum"] = list(self.enum_values)
        if self.patterns:
            out["pattern"] = self.patterns[0] if len(self.patterns) == 1 else list(self.patterns)
        if self.minimum is not None:
            out["minimum"] = _number_json(self.minimum)
        if self.maximum is not None:
            out["maximum"] = _number_json(self.maximum)
        if self.domains is not None:
            out["domains"] = list(self.domains)
        if self.required or not out:
            out["required"] = self.required  # a limit's JSON form is never empty
        return out

    def violation(self, value: Any) -> str | None:
        """Why `value` (the argument, or `_ABSENT`) breaks this limit, or None."""
        if value is _ABSENT:
            return "is required by the scope" if self.required else None
        if isinstance(value, list):
            for element in value:
                if isinstance(element, list | dict):
                    return "holds a nested value the scope's limits cannot apply to"
                why = self._one(element)
                if why is not None:
                    return why
            return None
        if isinstance(value, dict):
            return "is an object; the scope's limits apply to values"
        return self._one(value)

    def _one(self, value: Any) -> str | None:
        if self.enum is not None and canonical_json(value) not in self.enum:
            return "is not one of the scope's allowed values"
        if self._compiled:
            if not isinstance(value, str):
                return "is not a string, as the scope's pattern requires"
            for pattern, compiled in zip(self.patterns, self._compiled, strict=True):
                if compiled.fullmatch(value) is None:
                    return f"does not match the scope's pattern {pattern!r}"
        if self.minimum is not None or self.maximum is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return "is not a number, as the scope's range requires"
            if self.minimum is not None and value < self.minimum:
                return f"is below the scope's minimum {_number_json(self.minimum)}"
            if self.maximum is not None and value > self.maximum:
                return f"is above the scope's maximum {_number_json(self.maximum)}"
        if self.domains is not None:
            host = destination_host(value)
            if host is None:
                return "names no destination host the scope's domains can check"
            if not any(_covers(allowed, host) for allowed in self.domains):
                return f"names a host outside the scope's domains {list(self.domains)}"
        return None


@dataclass(frozen=True, slots=True)
class ToolScope:
    """One tool in a scope, and the limits on its arguments."""

    limits: Mapping[str, Limit] = field(default_factory=lambda: MappingProxyType({}))

    def to_json(self) -> dict[str, Any]:
        """The tool's scope in its JSON form."""
        if not self.limits:
            return {}
        return {"limits": {p: limit.to_json() for p, limit in sorted(self.limits.items())}}


@dataclass(frozen=True, slots=True)
class Scope:
    """The tools a task allows and the limits on their arguments."""

    tools: Mapping[str, ToolScope]

    def to_json(self) -> dict[str, Any]:
        """The scope in its JSON form (what warrants carry)."""
        return {"tools": {name: tool.to_json() for name, tool in sorted(self.tools.items())}}

    def violation(self, tool: str, arguments: Mapping[str, Any]) -> str | None:
        """Why a call of `tool` with `arguments` is outside this scope, or None."""
        allowed = self.tools.get(tool)
        if allowed is None:
            return f"tool {tool!r} is not in the task's scope"
        for pointer, limit in allowed.limits.items():
            why = limit.violation(resolve(arguments, pointer))
            if why is not None:
                return f"argument {pointer} {why}"
        return None


def parse_scope(data: Any) -> Scope:
    """Validate a scope's JSON form.

    Raises:
        InvalidInputError: says which tool, argument and limit is malformed.
    """
    if not isinstance(data, Mapping) or set(data) - {"tools"}:
        raise InvalidInputError('a scope is an object {"tools": {name: {"limits": {...}}}}')
    tools = data.get("tools")
    if not isinstance(tools, Mapping) or not tools:
        raise InvalidInputError("a scope names at least one tool")
    if len(tools) > MAX_TOOLS:
        raise InvalidInputError(f"a scope names at most {MAX_TOOLS} tools")
    parsed: dict[str, ToolScope] = {}
    for name, body in tools.items():
        if not isinstance(name, str) or not name.isascii() or not 0 < len(name) <= 128:
            raise InvalidInputError("scope: a tool name is 1-128 ASCII characters")
        parsed[name] = _parse_tool(name, body)
    return Scope(MappingProxyType(parsed))


def _parse_tool(name: str, body: Any) -> ToolScope:
    if body is None or body == {}:
        return ToolScope()
    if not isinstance(body, Mapping) or set(body) - {"limits"}:
        raise InvalidInputError(f'scope: tool {name!r}: expected {{"limits": {{...}}}}')
    limits = body.get("limits", {})
    if not isinstance(limits, Mapping):
        raise InvalidInputError(f"scope: tool {name!r}: limits must be an object")
    if len(limits) > MAX_LIMITS:
        raise InvalidInputError(f"scope: tool {name!r}: at most {MAX_LIMITS} limits")
    parsed: dict[str, Limit] = {}
    for key, spec in limits.items():
        pointer = _pointer(name, key)
        if pointer in parsed:
            raise InvalidInputError(f"scope: tool {name!r}: {pointer} is limited twice")
        parsed[pointer] = _parse_limit(f"scope: tool {name!r}, argument {pointer}", pointer, spec)
    return ToolScope(MappingProxyType(parsed))


def _pointer(tool: str, key: Any) -> str:
    if not isinstance(key, str) or not key or len(key) > 512:
        raise InvalidInputError(f"scope: tool {tool!r}: a limit's key is a JSON Pointer or a name")
    pointer: str = key
    if not pointer.startswith("/"):
        pointer = "/" + pointer.replace("~", "~0").replace("/", "~1")
    if re.search(r"~(?![01])", pointer):
        raise InvalidInputError(f"scope: tool {tool!r}: {pointer!r} is not a valid JSON Pointer")
    return pointer


def _parse_limit(where: str, pointer: str, spec: Any) -> Limit:
    if not isinstance(spec, Mapping) or not spec:
        raise InvalidInputError(f'{where}: a limit is an object such as {{"maximum": 100}}')
    unknown = set(spec) - _KINDS
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown limit {sorted(unknown)[0]!r}; use {', '.join(sorted(_KINDS))}"
        )
    enum_values = None
    if "enum" in spec:
        values = spec["enum"]
        if not isinstance(values, list) or not values or len(values) > MAX_ENUM:
            raise InvalidInputError(f"{where}: enum is a list of 1-{MAX_ENUM} values")
        enum_values = tuple(values)
    patterns: tuple[str, ...] = ()
    if "pattern" in spec:
        raw = spec["pattern"]
        patterns = tuple(raw) if isinstance(raw, list) else (raw,)
        if not patterns or not all(
            isinstance(p, str) and 0 < len(p) <= MAX_PATTERN_CHARS for p in patterns
        ):
            raise InvalidInputError(
                f"{where}: pattern is a regular expression of 1-{MAX_PATTERN_CHARS} characters"
            )
    minimum = _bound(where, spec, "minimum")
    maximum = _bound(where, spec, "maximum")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise InvalidInputError(f"{where}: minimum is above maximum")
    domains = None
    if "domains" in spec:
        raw_domains = spec["domains"]
        if not isinstance(raw_domains, list) or not 0 < len(raw_domains) <= MAX_DOMAINS:
            raise InvalidInputError(f"{where}: domains is a list of 1-{MAX_DOMAINS} host names")
        domains = tuple(_domain(where, d) for d in raw_domains)
    required = spec.get("required", False)
    if not isinstance(required, bool):
        raise InvalidInputError(f"{where}: required is true or false")
    return make_limit(
        pointer,
        enum_values=enum_values,
        patterns=patterns,
        minimum=minimum,
        maximum=maximum,
        domains=domains,
        required=required,
        where=where,
    )


def make_limit(
    pointer: str,
    *,
    enum_values: Sequence[Any] | None = None,
    patterns: Sequence[str] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    domains: Sequence[str] | None = None,
    required: bool = False,
    where: str = "scope",
) -> Limit:
    """A `Limit` with its enum canonicalised and its patterns compiled.

    Raises:
        InvalidInputError: a pattern does not compile or an enum value has no canonical form.
    """
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise InvalidInputError(
                f"{where}: pattern {pattern!r} does not compile: {exc}"
            ) from exc
    enum = None
    if enum_values is not None:
        try:
            enum = tuple(canonical_json(v) for v in enum_values)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: enum: {exc.message}") from exc
    return Limit(
        pointer,
        enum=enum,
        enum_values=None if enum_values is None else tuple(enum_values),
        patterns=tuple(patterns),
        minimum=minimum,
        maximum=maximum,
        domains=None if domains is None else tuple(domains),
        required=required,
        _compiled=tuple(compiled),
    )


def _bound(where: str, spec: Mapping[str, Any], key: str) -> float | None:
    if key not in spec:
        return None
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"{where}: {key} is a finite number")
    return value


def _domain(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{where}: a domain is a host name such as 'acme.example'")
    name = value.lower().rstrip(".")
    bare = name[2:] if name.startswith("*.") else name
    if not _HOST.fullmatch(bare) or len(bare) > 253:
        raise InvalidInputError(
            f"{where}: {value!r} is not a host name (ASCII; use punycode), "
            "optionally with a '*.' prefix"
        )
    return name


def _number_json(value: float) -> int | float:
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


def resolve(document: Any, pointer: str) -> Any:
    """The value at a JSON Pointer in `document`, or a marker for "absent"."""
    current = document
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(current, Mapping):
            if token not in current:
                return _ABSENT
            current = current[token]
        elif isinstance(current, list):
            if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
                return _ABSENT
            index = int(token)
            if index >= len(current):
                return _ABSENT
            current = current[index]
        else:
            return _ABSENT
    return current


def destination_host(value: Any) -> str | None:
    """The host a URL, an e-mail address or a bare host name points at (lower-case), or None."""
    if not isinstance(value, str) or not value or len(value) > 2048:
        return None
    text = value.strip()
    if "://" in text:
        # WHATWG URL parsers (browsers, Node) end the host at a backslash; urlsplit does not.
        if "\\" in re.split(r"[/?#]", text.split("://", 1)[1], maxsplit=1)[0]:
            return None
        try:
            host = urlsplit(text).hostname
        except ValueError:
            return None
    elif "@" in text:
        host = text.rsplit("@", 1)[1]
    else:
        host = text
    if not host:
        return None
    host = host.lower().rstrip(".")
    return host if _HOST.fullmatch(host) else None


def _covers(allowed: str, host: str) -> bool:
    if allowed.startswith("*."):
        return host.endswith(allowed[1:])
    return host == allowed


# -- delegation ------------------------------------------------------------------


def narrow(parent: Scope, requested: Scope | None) -> Scope:
    """The scope a delegated warrant gets: `requested`, checked to be within `parent`.

    Limits the child leaves out are inherited; limits it states must be at
    least as tight as the parent's; patterns accumulate (both must match).

    Raises:
        InvalidInputError: the request adds a tool or widens a limit (says which).
    """
    if requested is None:
        return parent
    tools: dict[str, ToolScope] = {}
    for name, child in requested.tools.items():
        allowed = parent.tools.get(name)
        if allowed is None:
            raise InvalidInputError(f"delegation adds tool {name!r}, which the parent may not call")
        limits = dict(allowed.limits)
        for pointer, limit in child.limits.items():
            inherited = limits.get(pointer)
            where = f"delegation: tool {name!r}, argument {pointer}"
            limits[pointer] = limit if inherited is None else _tighter(where, inherited, limit)
        tools[name] = ToolScope(MappingProxyType(limits))
    return Scope(MappingProxyType(tools))


def _tighter(where: str, parent: Limit, child: Limit) -> Limit:
    enum_values = parent.enum_values
    if child.enum is not None:
        if parent.enum is not None and not set(child.enum) <= set(parent.enum):
            raise InvalidInputError(f"{where}: enum adds values the parent does not allow")
        enum_values = child.enum_values
    minimum = parent.minimum
    if child.minimum is not None:
        if minimum is not None and child.minimum < minimum:
            raise InvalidInputError(f"{where}: minimum is below the parent's {minimum:g}")
        minimum = child.minimum
    maximum = parent.maximum
    if child.maximum is not None:
        if maximum is not None and child.maximum > maximum:
            raise InvalidInputError(f"{where}: maximum is above the parent's {maximum:g}")
        maximum = child.maximum
    if minimum is not None and maximum is not None and minimum > maximum:
        raise InvalidInputError(f"{where}: minimum is above maximum")
    domains = parent.domains
    if child.domains is not None:
        if domains is not None:
            for domain in child.domains:
                if not any(_covers_domain(p, domain) for p in domains):
                    raise InvalidInputError(f"{where}: domain {domain!r} is outside the parent's")
        domains = child.domains
    patterns = parent.patterns + tuple(p for p in child.patterns if p not in parent.patterns)
    return make_limit(
        parent.pointer,
        enum_values=enum_values,
        patterns=patterns,
        minimum=minimum,
        maximum=maximum,
        domains=domains,
        required=parent.required or child.required,
        where=where,
    )


def _covers_domain(parent: str, child: str) -> bool:
    """True if every host `child` admits is one `parent` admits."""
    if child.startswith("*."):
        return parent.startswith("*.") and (child == parent or child.endswith(parent[1:]))
    return _covers(parent, child)
