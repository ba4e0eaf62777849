"""Provenance: where each value an agent sends came from (taint tracking per task).

Two checks share a `Ledger` (guards/ledger.py):

- `provenance_record`, after each call: the steering values in the tool's
  result (guards/values.py) are recorded for the task — as trusted when
  the tool is declared trusted or the field a system of record, as
  untrusted otherwise (the default: a tool result is third-party content).
  The untrusted text's word 4-grams are recorded for the justification check.
- `provenance`, before calls of tools that write or send data out: each
  argument's steering values are classified. Trusted: found in the task's
  intent, allowed by its scope (an `enum`, a `domains` limit on that
  argument), listed in the tool's own schema (`enum`, `const`), or seen in
  a trusted result. Anything else is untrusted: seen in untrusted results
  (tainted, with the tools it came from), or found nowhere (unknown origin:
  an agent can decode, translate or assemble a value out of untrusted text,
  so trust is only ever positive).

Untrusted arguments become facts for policy (`TAINTED_ARGUMENTS`,
`TAINT_SOURCES`); the check itself allows. Reasons name argument pointers
and tools, never values.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ztgate.guards import facts as fact
from ztgate.guards.ledger import Ledger, shingles
from ztgate.guards.paths import leaves, pointer, shown
from ztgate.guards.taskinfo import TaskInfoCache, task_id
from ztgate.guards.values import (
    EMAIL,
    HANDLE,
    HOST,
    IDENT,
    TEXT,
    TextScan,
    Value,
    clean,
    is_small_count,
    number_value,
    percent_decode,
    shared_scan,
    shared_scan_of,
    strict_text,
    text_value,
    whole,
)
from ztgate.models import Outcome, ToolCall, ToolResult, Verdict
from ztgate.pipeline import CallContext
from ztgate.tasks.scope import Scope, destination_host
from ztgate.tools.flow import CONTENT, STEERING, UNTRACKED, ToolFlow, covers, parse_pattern

NAME = "provenance"
RECORD = "provenance_record"
WARRANT_FACT = "warrant.verified"  # the `warrant` check's verified warrant
SHORT_TEXT = 200  # a string this short is also recorded as a whole (a name, a title)
DEFAULT_MAX_CHARS = 1_048_576
MAX_HARVEST = 20_000  # candidate values looked at in one result
# An argument whose text holds more values than a scan looks at: never trusted.
UNTRACEABLE = Value(TEXT, "", ())
_NO_FLOW = ToolFlow()
_CONTAINED_KINDS = frozenset({EMAIL, HOST, HANDLE, TEXT})
_SPACE = re.compile(r"\s")  # what `str.isspace` is true for (both are Py_UNICODE_ISSPACE)


# -- field roles ------------------------------------------------------------------------


class FieldRoles:
    """Which fields of a tool's results are trusted, from its flow settings."""

    def __init__(self, flow: ToolFlow) -> None:
        """Compile the flow's field patterns."""
        self.default = flow.trusted
        patterns = [(parse_pattern(p, "record_fields"), True) for p in flow.record_fields]
        patterns += [(parse_pattern(p, "content_fields"), False) for p in flow.content_fields]
        # Longest first; among equals, content (untrusted) first: it wins a tie.
        self._patterns = sorted(patterns, key=lambda item: (-len(item[0]), item[1]))

    def trusted(self, path: Sequence[str]) -> bool:
        """True if the result field at `path` is trusted."""
        for tokens, trusted in self._patterns:
            if covers(tokens, path):
                return trusted
        return self.default


# -- recording results --------------------------------------------------------------------


@dataclass(slots=True)
class Harvest:
    """What one result holds: strict forms seen trusted, loose forms and shingles untrusted."""

    trusted: set[str] = field(default_factory=set)
    untrusted: set[str] = field(default_factory=set)
    shingles: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        """How many forms were found."""
        return len(self.trusted) + len(self.untrusted)


def harvest(
    body: Any,
    roles: FieldRoles,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_candidates: int = MAX_HARVEST,
) -> Harvest:
    """The steering values of a result, by the trust of the fields holding them.

    At most `max_chars` characters of text and `max_candidates` candidate
    values are looked at; what lies beyond is not recorded (so it reads as
    of unknown origin: untrusted).
    """
    found = Harvest()
    budget = max_chars
    candidates = max_candidates
    untrusted_text: list[str] = []
    for path, value in leaves(body):
        if budget <= 0 or candidates <= 0:
            break
        trusted = roles.trusted(path)
        values: Sequence[Value] = ()
        if isinstance(value, str):
            text = value[:budget]
            budget -= len(text)
            values, candidates = _values_in(text, candidates)
            if not trusted and " " in text:
                untrusted_text.append(text)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            number = number_value(value)
            values = () if number is None else (number,)
        for item in values:
            if trusted:
                if item.strict:
                    found.trusted.add(item.strict)
            else:
                found.untrusted.update(item.loose)
    if untrusted_text:
        found.shingles = shingles("\n".join(untrusted_text))
    return found


def _values_in(text: str, budget: int) -> tuple[Sequence[Value], int]:
    """The values of one string of a result, and the candidate budget left after it.

    A scan that ran to its end is kept (`_HARVESTED`): the same string
    scanned again with at least the candidates it spent finds the same
    values and spends as many (the finders are deterministic, and `spend`
    only fails when the budget is out). A scan cut short is never kept.
    """
    cached = _HARVESTED.get(text)
    if cached is not None and cached[1] <= budget:
        _HARVESTED.move_to_end(text)
        return cached[0], budget - cached[1] - 1
    values, left, complete = _scan_values(text, budget)
    if complete and len(text) <= HARVEST_CACHE_TEXT and len(values) <= HARVEST_CACHE_VALUES:
        _HARVESTED[text] = (tuple(values), budget - left)
        while len(_HARVESTED) > HARVEST_CACHE:
            _HARVESTED.popitem(last=False)
    return values, left - 1


def _scan_values(text: str, budget: int) -> tuple[list[Value], int, bool]:
    """`_values_in` without the cache: the values, the budget left, and whether no scan was cut."""
    values: list[Value] = []
    complete = True
    found = whole(text)
    if found is not None:
        values.append(found)
    stripped = text.strip()
    if found is None or " " in stripped:
        cleaned = clean(text)
        scan = TextScan(cleaned, budget=budget)
        shared = shared_scan_of(cleaned)  # an argument's: its addresses are already found
        if shared is not None:
            scan.adopt_addresses(shared)
        values.extend(item.value for item in scan.everything())
        budget = scan.budget
        complete = not scan.truncated
        decoded = percent_decode(text) if "%" in text else text
        if decoded != text:
            # Hidden by percent-encoding: recognised, never trusted.
            scan = TextScan(clean(decoded), budget=budget)
            values.extend(Value(i.value.kind, "", i.value.loose) for i in scan.everything())
            budget = scan.budget
            complete = complete and not scan.truncated
    if stripped and len(stripped) <= SHORT_TEXT and (found is None or found.kind != TEXT):
        short = text_value(stripped)
        if short is not None:
            values.append(short)
    return values, budget, complete


# Strings of results whose values were found (see `_values_in`): results
# repeat strings (keys' values, a structured result and its text), and the
# most recent ones are kept, each short and with few values.
HARVEST_CACHE = 1024
HARVEST_CACHE_TEXT = 4096  # characters of one string kept at most
HARVEST_CACHE_VALUES = 64
_HARVESTED: OrderedDict[str, tuple[tuple[Value, ...], int]] = OrderedDict()


class ProvenanceRecorder:
    """Result check: record the steering values of a result for the call's task."""

    name = RECORD

    def __init__(
        self, ledger: Ledger, tasks: TaskInfoCache, *, max_chars: int = DEFAULT_MAX_CHARS
    ) -> None:
        """Record into `ledger`, for as long as the task (from `tasks`) lives."""
        self._ledger = ledger
        self._tasks = tasks
        self._max_chars = max_chars
        self._roles: dict[tuple[Any, ...], FieldRoles] = {}

    async def __call__(self, call: ToolCall, result: ToolResult, ctx: CallContext) -> Verdict:
        """Allow, having recorded what the result holds."""
        task = task_id(ctx.facts)
        if task is None:
            return Verdict(RECORD, Outcome.ALLOW, "no task to record the result's values for")
        tool = ctx.tool.spec if ctx.tool is not None else None
        flow = (tool.flow if tool is not None else None) or _NO_FLOW
        found = harvest(result.body, self._roles_of(flow), self._max_chars)
        info = await self._tasks.get(task)
        ttl = self._ledger.ttl(info.expires_at if info is not None else None, ctx.clock.now())
        await self._ledger.record(
            task,
            call.tool,
            trusted=found.trusted,
            untrusted=found.untrusted,
            text_shingles=found.shingles,
            ttl=ttl,
        )
        return Verdict(
            RECORD,
            Outcome.ALLOW,
            f"recorded {found.size} values ({len(found.trusted)} trusted) from {call.tool}",
        )

    def _roles_of(self, flow: ToolFlow) -> FieldRoles:
        key = (flow.trusted, flow.record_fields, flow.content_fields)
        roles = self._roles.get(key)
        if roles is None:
            if len(self._roles) > 1024:
                self._roles.clear()
            roles = self._roles[key] = FieldRoles(flow)
        return roles


# -- classifying arguments ----------------------------------------------------------------


def argument_values(
    arguments: Mapping[str, Any], roles: Mapping[str, str]
) -> list[tuple[tuple[str, ...], list[Value]]]:
    """The steering values of each argument, by its declared role or by its shape.

    A number counts unless it is a small count; a string is a value as a
    whole when it has a value's shape (or is declared `steering`); free
    text (or a `content` argument) counts for the addresses inside it.
    """
    patterns = sorted(
        ((parse_pattern(p, "arguments"), role) for p, role in roles.items()),
        key=lambda item: -len(item[0]),
    )
    out: list[tuple[tuple[str, ...], list[Value]]] = []
    for path, value in leaves(arguments):
        role = (
            next((r for tokens, r in patterns if covers(tokens, path)), None) if patterns else None
        )
        if role == UNTRACKED or value is None or isinstance(value, bool):
            continue
        values: list[Value] = []
        if isinstance(value, int | float):
            number = None if is_small_count(value) else number_value(value)
            values = [] if number is None else [number]
        elif isinstance(value, str):
            values = _argument_strings(value, role)
        if values:
            out.append((path, values))
    return out


def _argument_strings(text: str, role: str | None) -> list[Value]:
    if role == STEERING:
        found = whole(text) or text_value(text)
        return [] if found is None else [found]
    if role != CONTENT:
        found = whole(text)
        if found is not None:
            return [found]
        if _SPACE.search(text.strip()) is None:
            return []  # a plain word
    scan = shared_scan(clean(text))
    inside = [item.value for item in scan.addresses()]
    return [*inside, UNTRACEABLE] if scan.truncated else inside


@dataclass(frozen=True, slots=True)
class IntentForms:
    """The values a task's intent names: strict forms, and its text for containment."""

    strict: frozenset[str]
    folded: str  # case-folded
    cased: str

    @classmethod
    def of(cls, intent: str) -> IntentForms:
        """Scan an intent once."""
        cleaned = clean(intent)
        forms = {item.value.strict for item in TextScan(cleaned).everything()}
        return cls(frozenset(forms), strict_text(intent), " ".join(cleaned.split()))

    def names(self, value: Value) -> bool:
        """True if the intent names `value`."""
        if value.strict in self.strict:
            return True
        if value.kind in _CONTAINED_KINDS:
            return _contains(self.folded, value.strict)
        if value.kind == IDENT:
            return _contains(self.cased, value.strict)
        return False


def _contains(text: str, part: str) -> bool:
    """True if `part` occurs in `text` not inside a longer word."""
    if not part:
        return False
    start = text.find(part)
    while start >= 0:
        end = start + len(part)
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not before.isalnum() and not after.isalnum():
            return True
        start = text.find(part, start + 1)
    return False


def scope_trusts(scope: Scope | None, tool: str, path: Sequence[str], value: Value) -> bool:
    """True if the task's scope vouches for `value` at `path` (an `enum`, a `domains` limit)."""
    if scope is None:
        return False
    allowed = scope.tools.get(tool)
    if allowed is None or not allowed.limits:
        return False
    candidates = {pointer(path)}
    if path and path[-1].isdigit():
        candidates.add(pointer(path[:-1]))  # a limit applies to each element of an array
    for where in candidates:
        limit = allowed.limits.get(where)
        if limit is None:
            continue
        if limit.enum_values is not None and value.strict in _forms(limit.enum_values):
            return True
        if limit.domains is not None and value.kind in ("email", "url", "host"):
            host = destination_host(value.strict)
            if host is not None and any(_domain_covers(d, host) for d in limit.domains):
                return True
    return False


def schema_trusts(schema: Mapping[str, Any], path: Sequence[str], value: Value) -> bool:
    """True if the tool's own input schema lists `value` (`enum` or `const`) at `path`."""
    node: Any = schema
    for token in path:
        if not isinstance(node, Mapping):
            return False
        properties = node.get("properties")
        if isinstance(properties, Mapping) and token in properties:
            node = properties[token]
        elif token.isdigit() and isinstance(node.get("items"), Mapping):
            node = node["items"]
        else:
            return False
    if not isinstance(node, Mapping):
        return False
    listed = list(node.get("enum", ())) if isinstance(node.get("enum"), list) else []
    if "const" in node:
        listed.append(node["const"])
    return bool(listed) and value.strict in _forms(listed)


def _forms(values: Sequence[Any]) -> frozenset[str]:
    forms = set()
    for item in values:
        found: Value | None = None
        if isinstance(item, str):
            found = whole(item) or text_value(item)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            found = number_value(item)
        if found is not None and found.strict:
            forms.add(found.strict)
    return frozenset(forms)


def _domain_covers(allowed: str, host: str) -> bool:
    if allowed.startswith("*."):
        return host.endswith(allowed[1:])
    return host == allowed


class ProvenanceCheck:
    """Pre-call check: the origin of each steering value in a write or egress call."""

    name = NAME

    def __init__(self, ledger: Ledger, tasks: TaskInfoCache, *, cache_size: int = 1024) -> None:
        """Classify against `ledger` and the intents of `tasks`."""
        self._ledger = ledger
        self._tasks = tasks
        self._intents: OrderedDict[str, IntentForms] = OrderedDict()
        self._cache_size = cache_size

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow, with the untrusted arguments as facts."""
        entry = ctx.tool
        if entry is None:
            return Verdict(NAME, Outcome.ALLOW, "unknown tool: the registry decides")
        flow = entry.spec.flow or _NO_FLOW
        if entry.spec.risk.value not in ("write", "critical") and not flow.egress:
            return Verdict(NAME, Outcome.ALLOW, "not traced: a read tool")
        task = task_id(ctx.facts)
        if task is None:
            return Verdict(NAME, Outcome.ALLOW, "not traced: no task")
        found = argument_values(call.arguments, flow.arguments)
        if not found:
            return Verdict(NAME, Outcome.ALLOW, "no steering values in the arguments")
        intent = await self._intent(task)
        warrant = ctx.facts.get(WARRANT_FACT)
        scope = getattr(warrant, "scope", None)
        pending: list[tuple[tuple[str, ...], Value]] = []
        for path, values in found:
            for value in values:
                if value.strict and (
                    (intent is not None and intent.names(value))
                    or scope_trusts(scope, call.tool, path, value)
                    or schema_trusts(entry.spec.input_schema, path, value)
                ):
                    continue
                pending.append((path, value))
        if not pending:
            return Verdict(NAME, Outcome.ALLOW, "every steering value is of trusted origin")
        strict = sorted({value.strict for _, value in pending if value.strict})
        loose = sorted({form for _, value in pending for form in value.loose})
        seen = await self._ledger.lookup(task, strict, loose)
        untrusted: dict[str, set[str]] = {}
        for path, value in pending:
            if value.strict and value.strict in seen.trusted:
                continue
            sources = untrusted.setdefault(pointer(path), set())
            for form in value.loose:
                sources.update(seen.sources.get(form, ()))
        if not untrusted:
            return Verdict(NAME, Outcome.ALLOW, "every steering value is of trusted origin")
        return _tainted(untrusted)

    async def _intent(self, task: str) -> IntentForms | None:
        cached = self._intents.get(task)
        if cached is not None:
            self._intents.move_to_end(task)
            return cached
        info = await self._tasks.get(task)
        if info is None:
            return None
        forms = self._intents[task] = IntentForms.of(info.intent)
        while len(self._intents) > self._cache_size:
            self._intents.popitem(last=False)
        return forms


def _tainted(untrusted: Mapping[str, set[str]]) -> Verdict:
    pointers = sorted(untrusted)
    sources = {p: sorted(untrusted[p]) for p in pointers if untrusted[p]}
    described = []
    for where in pointers:
        origin = "seen in results of " + ", ".join(sources[where]) if where in sources else None
        described.append(f"{shown(where)} ({origin or 'origin unknown'})")
    reason = "arguments of untrusted origin: " + "; ".join(described)
    facts: dict[str, Any] = {fact.TAINTED_ARGUMENTS: pointers}
    if sources:
        facts[fact.TAINT_SOURCES] = sources
    return Verdict(NAME, Outcome.ALLOW, reason[:500], facts)
