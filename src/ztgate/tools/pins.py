"""Tool pinning: the fingerprint of what a tool tells agents, approved by a principal.

A tool's fingerprint is the SHA-256 of the RFC 8785 canonical JSON of
`{"description", "input_schema", "output_schema"}`: what an agent reads
about the tool and what the gateway validates its calls and results
against. The registry stores the fingerprint approved for each tool
(`pin_sha256`): set when the tool is first registered (unless its
description carries hidden instructions) and by `ztgate tools approve`.
A tool whose fingerprint no longer matches its pin (a rug pull: the
description or a schema changed, by a config reload or `tools add
--replace`) is refused until a principal approves it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from ztgate.canonical import canonical_json


def fingerprint(
    description: str, input_schema: Mapping[str, Any], output_schema: Mapping[str, Any] | None
) -> str:
    """Hex SHA-256 of the canonical description and schemas."""
    document = {
        "description": description,
        "input_schema": dict(input_schema),
        "output_schema": None if output_schema is None else dict(output_schema),
    }
    return hashlib.sha256(canonical_json(document)).hexdigest()
