"""Writing the small TOML documents `ztgate init` produces."""

from __future__ import annotations

import json
from typing import Any


def value(item: Any) -> str:
    """`item` as a TOML value (inline tables and arrays for containers)."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int | float):
        return repr(item)
    if isinstance(item, str):
        # A JSON string with ASCII escapes is a valid TOML basic string.
        return json.dumps(item, ensure_ascii=True)
    if isinstance(item, list):
        return "[" + ", ".join(value(element) for element in item) + "]"
    if isinstance(item, dict):
        pairs = ", ".join(f"{key(k)} = {value(v)}" for k, v in item.items())
        return "{ " + pairs + " }" if pairs else "{}"
    raise TypeError(f"cannot write {type(item).__name__} as TOML")


def key(name: str) -> str:
    """A TOML key, quoted when it is not a bare key."""
    bare = name.replace("_", "").replace("-", "").isalnum() and name.isascii()
    return name if bare else json.dumps(name, ensure_ascii=True)


def array_of_tables(name: str, entries: list[dict[str, Any]]) -> str:
    """`[[name]]` blocks for each entry."""
    blocks = []
    for entry in entries:
        lines = [f"[[{name}]]"] + [f"{key(k)} = {value(v)}" for k, v in entry.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
