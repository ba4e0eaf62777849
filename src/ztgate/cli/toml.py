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
        return _basic_string(item)
    if isinstance(item, list):
        return "[" + ", ".join(value(element) for element in item) + "]"
    if isinstance(item, dict):
        pairs = ", ".join(f"{key(k)} = {value(v)}" for k, v in item.items())
        return "{ " + pairs + " }" if pairs else "{}"
    raise TypeError(f"cannot write {type(item).__name__} as TOML")


def key(name: str) -> str:
    """A TOML key, quoted when it is not a bare key."""
    bare = name.replace("_", "").replace("-", "").isalnum() and name.isascii()
    return name if bare else _basic_string(name)


def _basic_string(text: str) -> str:
    # JSON escapes quotes, backslashes and C0 controls the way TOML does. TOML
    # also forbids DEL, and JSON's surrogate-pair escapes are not valid TOML,
    # so everything else is written as itself (the file is UTF-8).
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def array_of_tables(name: str, entries: list[dict[str, Any]]) -> str:
    """`[[name]]` blocks for each entry."""
    blocks = []
    for entry in entries:
        lines = [f"[[{name}]]"] + [f"{key(k)} = {value(v)}" for k, v in entry.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
