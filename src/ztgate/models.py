"""The call model: what an agent asks for, what each check says, and the decision.

These are internal records (frozen dataclasses). Wire formats live at the
front doors, which parse into these types at the edge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Outcome(Enum):
    """What a check, or the pipeline as a whole, says about a call."""

    ALLOW = "allow"
    ASK = "ask"  # a human must decide
    DENY = "deny"


class Phase(Enum):
    """Whether a decision is about making the call or about its result."""

    CALL = "call"
    RESULT = "result"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the caller presented, as received; checks decide what it proves."""

    bearer: str | None = None
    client_certificate: bytes | None = None
    warrant: str | None = None
    proof: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One request from an agent to run one tool once.

    `arguments` is the parsed JSON object; `canonical_arguments` is its
    RFC 8785 canonical form, computed once at the edge: what the audit log
    hashes (`arguments_sha256`) and what is forwarded to the tool.
    """

    call_id: str
    tool: str
    arguments: Mapping[str, Any]
    canonical_arguments: bytes
    justification: str = ""
    agent: str | None = None
    task_id: str | None = None
    credentials: Credentials = field(default_factory=Credentials)
    received_at: float = 0.0
    front_door: str = "http"
    # The approval the agent presents for this very call (`Ztgate-Approval`).
    approval_id: str | None = None

    @property
    def arguments_sha256(self) -> str:
        """Hex SHA-256 of the canonical arguments."""
        return hashlib.sha256(self.canonical_arguments).hexdigest()


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What the tool's upstream answered."""

    status: int
    body: Any
    content_type: str = "application/json"
    elapsed_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Obligation:
    """Something the front door must do to a result before the agent sees it.

    `kind` is one of `redact`, `spotlight`, `quarantine`; `detail` carries its
    parameters.
    """

    kind: str
    check: str
    detail: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One check's answer with its reason.

    `facts` are observations later checks (policy) may read; `obligations` are
    duties attached to an allow. `retry_after`, on a deny that passes with
    time (a rate limit), is the seconds until a retry may succeed; front
    doors say so (HTTP: 429 with Retry-After).
    """

    check: str
    outcome: Outcome
    reason: str = ""
    facts: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    obligations: tuple[Obligation, ...] = ()
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of a chain of checks over one call (or its result)."""

    call: ToolCall
    verdicts: tuple[Verdict, ...]
    phase: Phase = Phase.CALL
    elapsed_seconds: float = 0.0
    # `outcome`, found on first read: read about a dozen times per call, and
    # the verdicts (frozen, in a tuple) never change.
    _outcome: Outcome | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def outcome(self) -> Outcome:
        """Deny beats ask beats allow; no verdict at all is a deny."""
        found = self._outcome
        if found is None:
            found = _outcome_of(self.verdicts)
            object.__setattr__(self, "_outcome", found)
        return found

    @property
    def deciding(self) -> tuple[Verdict, ...]:
        """The verdicts that made the outcome what it is (all of them for an allow)."""
        outcome = self.outcome
        if not self.verdicts or outcome is Outcome.ALLOW:
            return self.verdicts
        if outcome is Outcome.ASK:
            return tuple(v for v in self.verdicts if v.outcome is Outcome.ASK)
        return tuple(v for v in self.verdicts if v.outcome not in (Outcome.ALLOW, Outcome.ASK))

    @property
    def retry_after(self) -> float | None:
        """For a deny that only time lifts (every deciding verdict says when): the longest wait."""
        if self.outcome is not Outcome.DENY:
            return None
        waits = [v.retry_after for v in self.deciding]
        if not waits or None in waits:
            return None
        return max(w for w in waits if w is not None)

    @property
    def obligations(self) -> tuple[Obligation, ...]:
        """Every obligation attached by any verdict, in check order."""
        return tuple(o for verdict in self.verdicts for o in verdict.obligations)

    def findings(self) -> list[dict[str, str]]:
        """The guards' findings behind a call that was not allowed, for audit and approvers.

        The allowing verdicts that found something for policy (a non-empty
        `guards.*` fact): the deciding reason is a policy's, these say what
        the policy saw, e.g. which argument came from untrusted content.
        """
        if self.outcome is Outcome.ALLOW:
            return []
        return [
            {"check": str(v.check), "outcome": "allow", "reason": str(v.reason)}
            for v in self.verdicts
            if v.outcome is Outcome.ALLOW
            and any(key.startswith("guards.") and value for key, value in v.facts.items())
        ]

    def reasons(self) -> list[dict[str, str]]:
        """The deciding verdicts as plain dicts, for problem details and audit."""
        if not self.verdicts:
            return [{"check": "pipeline", "outcome": "deny", "reason": "no check ran"}]
        return [
            {
                "check": str(v.check),
                "outcome": v.outcome.value if isinstance(v.outcome, Outcome) else "deny",
                "reason": str(v.reason),
            }
            for v in self.deciding
        ]


def _outcome_of(verdicts: tuple[Verdict, ...]) -> Outcome:
    """Deny beats ask beats allow; no verdict at all is a deny."""
    if not verdicts:
        return Outcome.DENY
    # A loop, not a set of the outcomes: hashing an Enum member runs Python code.
    asked = False
    for verdict in verdicts:
        outcome = verdict.outcome
        if outcome is Outcome.ASK:
            asked = True
        elif outcome is not Outcome.ALLOW:
            return Outcome.DENY  # a deny, or anything that is not an Outcome at all
    return Outcome.ASK if asked else Outcome.ALLOW
