"""What an agent's MCP requests carry for ztgate, in the request params' `_meta`.

MCP has no per-request header a desktop client or the stdio bridge could
set, but every request's params have a `_meta` object that travels over
every transport. ztgate reads these keys from it:

| key | on | what |
| --- | --- | --- |
| `ztgate/warrant` | `tools/list`, `tools/call` | the task's warrant, bound to the agent's key |
| `ztgate/proof` | `tools/call` | a fresh proof for this call (as `Ztgate-Proof` over HTTP) |
| `ztgate/justification` | `tools/call` | why the agent makes the call |
| `ztgate/approval` | `tools/call` | the approval a re-sent, approved call presents |

The agent's identity is the HTTP request's (`Authorization: Bearer
<JWT-SVID>`, or the mTLS client certificate), checked on every request. The
warrant may come instead as the HTTP header `Ztgate-Warrant` (it is the
same for every request of a task), which lets an MCP client's own
`tools/list`, sent without any `_meta`, see the task's tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

WARRANT = "ztgate/warrant"
PROOF = "ztgate/proof"
JUSTIFICATION = "ztgate/justification"
APPROVAL = "ztgate/approval"
# Longest value read for each key: a warrant or a proof is a compact JWS.
_MAX_CHARS = {WARRANT: 16384, PROOF: 8192, JUSTIFICATION: 2000, APPROVAL: 64}
KEYS = frozenset(_MAX_CHARS)


class MetaError(ValueError):
    """A `_meta` value ztgate reads is not a string, or too long."""


@dataclass(frozen=True, slots=True)
class CallMeta:
    """The ztgate values of one request's `_meta` (None: absent)."""

    warrant: str | None = None
    proof: str | None = None
    justification: str = ""
    approval: str | None = None


def read_meta(meta: Mapping[str, Any] | None) -> CallMeta:
    """The ztgate values in `meta`.

    Raises:
        MetaError: a value is not a string or is longer than allowed.
    """
    if not meta:
        return CallMeta()
    found: dict[str, str] = {}
    for key, limit in _MAX_CHARS.items():
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise MetaError(f"_meta {key!r} must be a string")
        if len(value) > limit:
            raise MetaError(f"_meta {key!r} is longer than {limit} characters")
        found[key] = value
    return CallMeta(
        warrant=found.get(WARRANT),
        proof=found.get(PROOF),
        justification=found.get(JUSTIFICATION, ""),
        approval=found.get(APPROVAL),
    )


def call_meta(
    warrant: str, proof: str, *, justification: str | None = None, approval: str | None = None
) -> dict[str, str]:
    """The `_meta` an agent sends with a `tools/call`."""
    meta = {WARRANT: warrant, PROOF: proof}
    if justification:
        meta[JUSTIFICATION] = justification
    if approval:
        meta[APPROVAL] = approval
    return meta
