"""The gateway's in-memory view of the registry, with compiled validators.

A `Catalog` is an immutable snapshot: the gateway swaps in a new one when the
tools generation changes, so a call sees one consistent set of tools.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from jsonschema import Draft202012Validator, FormatChecker

from ztgate.schema.plain import PlainCheck, plain_check
from ztgate.tools.model import Tool


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A tool with its argument and result validators compiled once.

    `pinned`: its description and schemas are the ones a principal approved
    (computed once per catalog, see tools/pins.py). `plain_arguments` and
    `plain_result`: quick checks that say only "surely valid" for plain
    schemas (ztgate.schema.plain; None for others), before the validators.
    """

    spec: Tool
    arguments: Draft202012Validator
    result: Draft202012Validator | None
    pinned: bool = True
    plain_arguments: PlainCheck | None = None
    plain_result: PlainCheck | None = None


class Catalog:
    """Tools by name, ready to validate calls."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        checker = FormatChecker()
        self._entries: Mapping[str, CatalogEntry] = {
            tool.name: CatalogEntry(
                tool,
                Draft202012Validator(tool.input_schema, format_checker=checker),
                None
                if tool.output_schema is None
                else Draft202012Validator(tool.output_schema, format_checker=checker),
                tool.pinned,
                plain_check(tool.input_schema, checker),
                None if tool.output_schema is None else plain_check(tool.output_schema, checker),
            )
            for tool in tools
        }

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> CatalogEntry | None:
        """The entry for `name`, or None when no such tool is registered."""
        return self._entries.get(name)

    def names(self) -> list[str]:
        """Registered tool names, sorted."""
        return sorted(self._entries)
