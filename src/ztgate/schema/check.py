"""Validate arguments (and results) against the tool's JSON Schema (Draft 2020-12).

Reasons name the failing location and schema keyword, never the offending
value, so that a secret sent in a wrong field does not reach the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable

from jsonschema import ValidationError
from jsonschema.exceptions import best_match

from ztgate.models import Outcome, ToolCall, ToolResult, Verdict
from ztgate.pipeline import CallContext

# Property names in these messages come from the schema, not from the agent.
_SCHEMA_NAMES_ONLY = frozenset({"required", "dependentRequired"})
# These would echo the agent's own keys, which may carry anything: count them.
_UNEXPECTED_KEYS = frozenset({"additionalProperties", "unevaluatedProperties"})


def describe(errors: Iterable[ValidationError]) -> str | None:
    """One line naming the most relevant schema violation, or None if there is none."""
    error = best_match(errors)
    if error is None:
        return None
    location = "/" + "/".join(str(part) for part in error.absolute_path)
    if error.validator in _SCHEMA_NAMES_ONLY:
        return f"at {location}: {error.message}"
    if error.validator in _UNEXPECTED_KEYS and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        unexpected = sum(1 for key in error.instance if key not in allowed)
        return f"at {location}: {unexpected} unexpected propert{'y' if unexpected == 1 else 'ies'}"
    expected = repr(error.validator_value)
    if len(expected) > 80:
        expected = expected[:77] + "..."
    return f"at {location}: violates {error.validator} {expected}"


class ArgumentsSchemaCheck:
    """Unknown or disabled tool, or arguments outside its schema: deny."""

    name = "schema"

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Check that the tool exists, is enabled and the arguments validate."""
        entry = ctx.tool
        if entry is None:
            return Verdict(self.name, Outcome.DENY, f"unknown tool {call.tool!r}")
        if not entry.spec.enabled:
            return Verdict(self.name, Outcome.DENY, f"tool {call.tool!r} is disabled")
        plain = entry.plain_arguments
        if plain is not None and plain(call.arguments):
            return Verdict(self.name, Outcome.ALLOW, "arguments match the schema")
        problem = describe(entry.arguments.iter_errors(call.arguments))
        if problem is not None:
            return Verdict(
                self.name,
                Outcome.DENY,
                f"arguments do not match the schema of {call.tool!r}: {problem}",
            )
        return Verdict(self.name, Outcome.ALLOW, "arguments match the schema")


class ResultSchemaCheck:
    """A result outside the tool's declared output schema is withheld."""

    name = "result_schema"

    async def __call__(self, call: ToolCall, result: ToolResult, ctx: CallContext) -> Verdict:
        """Check the result against the output schema, when the tool declares one."""
        entry = ctx.tool
        if entry is None or entry.result is None:
            return Verdict(self.name, Outcome.ALLOW, "no output schema declared")
        plain = entry.plain_result
        if plain is not None and plain(result.body):
            return Verdict(self.name, Outcome.ALLOW, "result matches the output schema")
        problem = describe(entry.result.iter_errors(result.body))
        if problem is not None:
            return Verdict(
                self.name, Outcome.DENY, f"result does not match the output schema: {problem}"
            )
        return Verdict(self.name, Outcome.ALLOW, "result matches the output schema")
