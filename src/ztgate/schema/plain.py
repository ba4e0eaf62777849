"""A quick "valid" for instances of plain schemas; jsonschema decides everything else.

Most tools' schemas are plain: objects with typed properties, `required`,
`additionalProperties`, arrays of such `items`, and annotations (`title`,
`description`, `default`, ...). jsonschema validates them keyword by keyword
through its generic machinery (a new validator per subschema), about
100 us for a four-property object; most calls' arguments and results are
valid. `plain_check(schema)` compiles such a schema once into a function
that answers True only when the instance is valid under Draft 2020-12 as
jsonschema reads it, and False whenever it is not sure: an invalid instance,
an integer written as `1.0`, a mapping that is not a `dict`. The checks then
ask jsonschema on False, so their verdicts and reasons are jsonschema's.

Plain schemas may also bound strings and numbers as jsonschema reads those
keywords: `minLength`/`maxLength` (code points, on `str` instances),
`minimum`/`maximum`/`exclusiveMinimum`/`exclusiveMaximum` (on `int` and
`float` instances; any other number is "not sure"), and `format`, asked of
the very `FormatChecker` the validators use (without one, `format` is not
plain). A schema with any other keyword anywhere in it (`$ref`, `enum`,
`pattern`, `anyOf`, `$schema`, ...), or a bound that is not a plain
non-negative integer or finite number, is not plain: `plain_check` returns
None and jsonschema validates every instance.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from jsonschema import FormatChecker

PlainCheck = Callable[[Any], bool]

# Annotations only: they never make an instance invalid.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly",
     "writeOnly"}
)  # fmt: skip
_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "items"})
_LENGTHS: dict[str, Callable[[int, int], bool]] = {
    "minLength": lambda size, bound: size >= bound,
    "maxLength": lambda size, bound: size <= bound,
}
_BOUNDS: dict[str, Callable[[Any, Any], bool]] = {
    "minimum": lambda value, bound: not value < bound,
    "maximum": lambda value, bound: not value > bound,
    "exclusiveMinimum": lambda value, bound: not value <= bound,
    "exclusiveMaximum": lambda value, bound: not value >= bound,
}
_SCALAR_KEYWORDS = frozenset({*_LENGTHS, *_BOUNDS, "format"})
_TYPES: dict[str, Callable[[Any], bool]] = {
    # Exactly the Python types the JSON decoder makes, each surely of its JSON
    # type (`type(True) is bool`, never int); anything else is "not sure".
    "string": lambda value: type(value) is str,
    "integer": lambda value: type(value) is int,
    "number": lambda value: type(value) is int or type(value) is float,
    "boolean": lambda value: type(value) is bool,
    "null": lambda value: value is None,
    "object": lambda value: type(value) is dict,
    "array": lambda value: type(value) is list,
}
_MAX_DEPTH = 32


def plain_check(schema: Any, formats: FormatChecker | None = None) -> PlainCheck | None:
    """A function that is True only for instances `schema` accepts; None if it is not plain.

    `formats` is the format checker the schema's validator asserts `format` with.
    """
    return _compile(schema, 0, formats)


def _always(value: Any) -> bool:
    return True


def _compile(schema: Any, depth: int, formats: FormatChecker | None) -> PlainCheck | None:
    if schema is True:
        return _always
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return None  # `false`, or not a schema: jsonschema says what it means
    if not all(type(key) is str for key in schema):
        return None
    keys = set(schema) - _ANNOTATIONS
    if not keys <= _KEYWORDS | _SCALAR_KEYWORDS:
        return None
    scalar = _scalar_checks(schema, keys & _SCALAR_KEYWORDS, formats)
    if scalar is None:
        return None
    type_check: Callable[[Any], bool] | None = None
    if "type" in schema:
        named = schema["type"]
        if type(named) is not str or named not in _TYPES:
            return None
        type_check = _TYPES[named]
    properties: dict[str, PlainCheck] = {}
    if "properties" in schema:
        given = schema["properties"]
        if not isinstance(given, Mapping):
            return None
        for name, subschema in given.items():
            compiled = _compile(subschema, depth + 1, formats)
            if type(name) is not str or compiled is None:
                return None
            properties[name] = compiled
    required: tuple[str, ...] = ()
    if "required" in schema:
        listed = schema["required"]
        if type(listed) is not list or not all(type(name) is str for name in listed):
            return None
        required = tuple(listed)
    additional: PlainCheck | None = _always
    closed = False
    if "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        if extra is False:
            closed, additional = True, None
        else:
            additional = _compile(extra, depth + 1, formats)
            if additional is None:
                return None
    items: PlainCheck | None = None
    if "items" in schema:
        items = _compile(schema["items"], depth + 1, formats)
        if items is None:
            return None
    return _Plain(type_check, properties, required, closed, additional, items, scalar)


def _scalar_checks(
    schema: Mapping[str, Any], keywords: set[str], formats: FormatChecker | None
) -> tuple[PlainCheck, ...] | None:
    """The string and number keywords' checks, as jsonschema applies them; None: not plain."""
    checks: list[PlainCheck] = []
    for keyword in sorted(keywords):
        bound = schema[keyword]
        if keyword in _LENGTHS:
            if type(bound) is not int or bound < 0:
                return None
            checks.append(_length_check(_LENGTHS[keyword], bound))
        elif keyword in _BOUNDS:
            if type(bound) not in (int, float) or not math.isfinite(bound):
                return None
            checks.append(_bound_check(_BOUNDS[keyword], bound))
        else:  # format
            if formats is None or type(bound) is not str:
                return None
            checks.append(_format_check(formats, bound))
    return tuple(checks)


def _length_check(within: Callable[[int, int], bool], bound: int) -> PlainCheck:
    # jsonschema: a string instance (`isinstance`), its length in code points.
    return lambda value: not isinstance(value, str) or within(len(value), bound)


def _bound_check(within: Callable[[Any, Any], bool], bound: Any) -> PlainCheck:
    def check(value: Any) -> bool:
        kind = type(value)
        if kind is int or kind is float:
            return within(value, bound)
        # jsonschema bounds any number but a bool; other numbers: not sure.
        return isinstance(value, bool) or not isinstance(value, numbers.Number)

    return check


def _format_check(formats: FormatChecker, name: str) -> PlainCheck:
    return lambda value: formats.conforms(value, name)


class _Plain:
    """One compiled plain schema."""

    __slots__ = (
        "_additional",
        "_closed",
        "_items",
        "_properties",
        "_required",
        "_scalar",
        "_type",
    )

    def __init__(
        self,
        type_check: Callable[[Any], bool] | None,
        properties: dict[str, PlainCheck],
        required: tuple[str, ...],
        closed: bool,
        additional: PlainCheck | None,
        items: PlainCheck | None,
        scalar: tuple[PlainCheck, ...] = (),
    ) -> None:
        self._type = type_check
        self._scalar = scalar
        self._properties = properties
        self._required = required
        self._closed = closed
        self._additional = None if additional is _always else additional
        self._items = None if items is _always else items

    def __call__(self, value: Any) -> bool:
        if self._type is not None and not self._type(value):
            return False
        for check in self._scalar:
            if not check(value):
                return False
        kind = type(value)
        if kind is dict:
            return self._object(value)
        if kind is list:
            if self._items is not None:
                check = self._items
                return all(check(item) for item in value)
            return True
        # A container jsonschema may read otherwise (a dict subclass, a tuple): not sure.
        return not isinstance(value, Mapping | list | tuple)

    def _object(self, value: dict[str, Any]) -> bool:
        for name in self._required:
            if name not in value:
                return False
        properties = self._properties
        for name, item in value.items():
            check = properties.get(name)
            if check is not None:
                if not check(item):
                    return False
            elif self._closed or (self._additional is not None and not self._additional(item)):
                return False
        return True
