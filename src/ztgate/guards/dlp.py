"""Outbound DLP: secrets, personal data and encoded blobs in the arguments of tools that send out.

The `dlp` check scans every string of the arguments (object keys too) and
numbers long enough to be card numbers, with the rule set of
guards/sensitive.py, for tools that send data out of the organisation:
those whose flow says `egress = true`, and by default every `write` and
`critical` tool (see tools/flow.py). It finds facts for policy —
`SECRETS_LEAVING`, `PII_LEAVING`, `ENCODED_LEAVING`: the kinds found — and
allows; the default policy denies secrets leaving. Reasons name kinds and
argument pointers, never what was found.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from ztgate.guards import facts as fact
from ztgate.guards.paths import pointer, shown
from ztgate.guards.sensitive import ENCODED, PII, SECRET, Finding, scan, scan_number
from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext
from ztgate.tools.flow import ToolFlow

NAME = "dlp"
_NO_FLOW = ToolFlow()
KEY_SCAN_CHARS = 16  # shorter argument names cannot hold a key or a token
_FACTS = {SECRET: fact.SECRETS_LEAVING, PII: fact.PII_LEAVING, ENCODED: fact.ENCODED_LEAVING}
_WORDS = {SECRET: "secrets", PII: "personal data", ENCODED: "encoded data"}
# An argument named like a credential, holding one (`{"password": "..."}`).
_CREDENTIAL_KEY = re.compile(
    r"(?:^|_)(?:password|passwd|passphrase|secret|client_secret|api_key|apikey|private_key|"
    r"access_token|refresh_token|auth_token|bearer_token|secret_key|access_key)(?:_|$)"
)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SEPARATORS = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=4096)
def credential_key(key: str) -> bool:
    """True if an argument called `key` holds a credential."""
    words = _SEPARATORS.sub("_", _CAMEL.sub(r"\1_\2", key).lower())
    return _CREDENTIAL_KEY.search(words) is not None


def scan_arguments(arguments: Any) -> list[tuple[str, Finding]]:
    """Every finding in `arguments`, with the pointer of the value (or key) it is in."""
    found: list[tuple[str, Finding]] = []
    stack: list[tuple[tuple[str, ...], Any]] = [((), arguments)]
    while stack:
        path, value = stack.pop()
        if type(value) is dict or isinstance(value, Mapping):  # dict first: no ABC check
            for key, item in value.items():
                name = str(key)
                where = (*path, name)
                if len(name) >= KEY_SCAN_CHARS:
                    found.extend((pointer(where), f) for f in scan(name))
                if isinstance(item, str) and len(item) >= 6 and credential_key(name):
                    found.append((pointer(where), Finding("credential_field", SECRET)))
                stack.append((where, item))
        elif isinstance(value, list | tuple):
            stack.extend(((*path, str(i)), item) for i, item in enumerate(value))
        elif isinstance(value, str):
            findings = scan(value)
            if findings:
                where_found = pointer(path)
                found.extend((where_found, f) for f in findings)
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**12:
            found.extend((pointer(path), f) for f in scan_number(value))
    return found


class OutboundDlpCheck:
    """Pre-call check: what sensitive data the arguments of an egress tool carry."""

    name = NAME

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow, with the kinds found as facts."""
        entry = ctx.tool
        if entry is None:
            return Verdict(NAME, Outcome.ALLOW, "unknown tool: the registry decides")
        flow = entry.spec.flow or _NO_FLOW
        if not flow.sends_out(entry.spec.risk.value):
            return Verdict(NAME, Outcome.ALLOW, "not scanned: the tool sends nothing out")
        found = scan_arguments(call.arguments)
        if not found:
            return Verdict(NAME, Outcome.ALLOW, "no secrets or personal data in the arguments")
        kinds: dict[str, dict[str, set[str]]] = {}
        for where, finding in found:
            kinds.setdefault(finding.category, {}).setdefault(finding.kind, set()).add(where)
        facts = {_FACTS[category]: sorted(named) for category, named in kinds.items()}
        parts = []
        for category in (SECRET, PII, ENCODED):
            named = kinds.get(category)
            if named:
                listed = ", ".join(
                    f"{kind} at {', '.join(shown(p) for p in sorted(where)[:3])}"
                    for kind, where in sorted(named.items())
                )
                parts.append(f"{_WORDS[category]}: {listed}")
        return Verdict(NAME, Outcome.ALLOW, "; ".join(parts)[:500], facts)
