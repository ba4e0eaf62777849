"""A call's arguments as Cedar values, in the types the tool's schema gives them.

Only the typed properties (see `schema`) reach `context.arguments`; others are
left out, which the validator has made sure no policy names. A value that
does not have its declared type cannot be evaluated as written, so it fails
closed: `ArgumentTypeError`, which the `policy` check turns into a deny
naming the argument, never its value.

Numbers: an `integer` property must be a whole number within Cedar's 64-bit
`Long` range; a `number` property becomes a Cedar `decimal`, so it must have
at most four decimal places and lie within +-922337203685477.5807. Rounding
would let 100.00001 pass a `lessThan(decimal("100.0"))` limit, so a value
that cannot be represented exactly is refused instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

from ztgate.policy.schema import CedarType

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
DECIMAL_LIMIT = Decimal("922337203685477.5807")
_PLACES = Decimal("0.0001")
_KINDS = {
    "String": "a string",
    "Long": "an integer",
    "Bool": "a boolean",
    "decimal": "a number",
    "Set": "an array",
    "Record": "an object",
}


class ArgumentTypeError(ValueError):
    """An argument's value does not have the Cedar type its schema declares."""

    def __init__(self, pointer: str, problem: str, *, label: str | None = None) -> None:
        """`label` names a value that is not an argument (the call's cost, say)."""
        self.pointer = pointer or "/"
        self.problem = problem
        super().__init__(f"{label or 'argument ' + self.pointer} {problem}")


def to_cedar(values: Mapping[str, Any], record: CedarType) -> dict[str, Any]:
    """The typed arguments of a call, as Cedar JSON values.

    Raises:
        ArgumentTypeError: a typed argument has another type, cannot be
            represented in Cedar, or a required one is missing.
    """
    return _record(values, record, "")


def _convert(value: Any, cedar: CedarType, pointer: str) -> Any:
    kind = cedar.kind
    if kind == "String" and isinstance(value, str):
        return value
    if kind == "Bool" and isinstance(value, bool):
        return value
    if kind == "Long" and not isinstance(value, bool):
        return _long(value, pointer)
    if kind == "decimal" and isinstance(value, int | float) and not isinstance(value, bool):
        return {"__extn": {"fn": "decimal", "arg": _decimal(value, pointer)}}
    if kind == "Set" and isinstance(value, list):
        assert cedar.element is not None  # noqa: S101 - a Set always has an element type
        element = cedar.element
        return [_convert(item, element, f"{pointer}/{index}") for index, item in enumerate(value)]
    if kind == "Record" and isinstance(value, Mapping):
        return _record(value, cedar, pointer)
    raise ArgumentTypeError(
        pointer, f"should be {_KINDS.get(kind, kind)} for policy conditions, but is {_kind(value)}"
    )


def _record(values: Mapping[str, Any], cedar: CedarType, pointer: str) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for name, attribute in cedar.attributes.items():
        where = f"{pointer}/{_escape(name)}"
        value = values.get(name)
        if value is None:
            if attribute.required:
                raise ArgumentTypeError(where, "is required by the tool's schema but missing")
            continue
        converted[name] = _convert(value, attribute.type, where)
    return converted


def amount_value(value: int | float, what: str) -> dict[str, Any]:
    """A cost or spend (never negative) as a Cedar decimal, rounded up to 4 places.

    Sums of costs carry floating-point noise (0.1 + 0.2); rounding up keeps
    an upper limit ("at most 100") at least as strict as the exact value.

    Raises:
        ArgumentTypeError: it is outside a Cedar decimal's range (named `what`).
    """
    number = Decimal(repr(float(value))).quantize(_PLACES, rounding=ROUND_CEILING)
    if abs(number) > DECIMAL_LIMIT:
        raise ArgumentTypeError(what, "is outside the range of a Cedar decimal", label=what)
    text = format(number.normalize(), "f")
    return {"__extn": {"fn": "decimal", "arg": text if "." in text else text + ".0"}}


def _long(value: Any, pointer: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ArgumentTypeError(
            pointer, f"should be an integer for policy conditions, but is {_kind(value)}"
        )
    if not LONG_MIN <= value <= LONG_MAX:
        raise ArgumentTypeError(pointer, "is outside Cedar's 64-bit integer range")
    return value


def _decimal(value: int | float, pointer: str) -> str:
    try:
        number = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    except InvalidOperation as exc:  # pragma: no cover - JSON has no NaN or infinity
        raise ArgumentTypeError(pointer, "is not a finite number") from exc
    if not number.is_finite() or abs(number) > DECIMAL_LIMIT:
        raise ArgumentTypeError(pointer, "is outside the range of a Cedar decimal")
    exponent = number.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -4:
        raise ArgumentTypeError(
            pointer, "has more than 4 decimal places, which a Cedar decimal cannot hold"
        )
    text = format(number.quantize(_PLACES).normalize(), "f")
    return text if "." in text else text + ".0"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction" if not value.is_integer() else "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _escape(name: str) -> str:
    """A JSON Pointer reference token (RFC 6901)."""
    return name.replace("~", "~0").replace("/", "~1")
