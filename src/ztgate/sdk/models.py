"""What the SDK hands back: call results, held warrants, delegations, the SVID key in use."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ztgate.warrants.jwk import public_jwk, thumbprint


@dataclass(frozen=True, slots=True)
class Reason:
    """One check's verdict on a call: which check, what it decided, and why."""

    check: str
    outcome: str
    reason: str

    @classmethod
    def from_json(cls, data: Any) -> Reason:
        """A reason from the gateway's `{check, outcome, reason}` (missing members read as "")."""
        if not isinstance(data, Mapping):
            return cls("", "", str(data))
        return cls(
            str(data.get("check", "")), str(data.get("outcome", "")), str(data.get("reason", ""))
        )


@dataclass(frozen=True, slots=True)
class CallResult:
    """An allowed call: the tool's result and every check's verdict."""

    call_id: str
    result: Any
    verdicts: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class Grant:
    """A warrant an agent may bind: its task's own (`warrant_id` None) or one delegated to it."""

    task_id: str
    warrant_id: str | None = None

    def to_json(self) -> dict[str, str]:
        """What a delegating agent hands to its sub-agent."""
        out = {"task_id": self.task_id}
        if self.warrant_id is not None:
            out["warrant_id"] = self.warrant_id
        return out


@dataclass(frozen=True, slots=True)
class BoundWarrant:
    """A warrant token as held by the agent, bound to the SVID key with thumbprint `jkt`."""

    token: str = field(repr=False)
    warrant_id: str
    task_id: str
    jkt: str
    expires_at: float

    @property
    def grant(self) -> Grant:
        """What to bind again after the SVID rotates."""
        return Grant(self.task_id, self.warrant_id)


@dataclass(frozen=True, slots=True)
class Delegation:
    """A warrant delegated to a sub-agent, not yet bound: hand `grant` (or `to_json()`) over."""

    warrant_id: str
    task_id: str
    expires_at: float
    depth: int

    @property
    def grant(self) -> Grant:
        """What the sub-agent binds."""
        return Grant(self.task_id, self.warrant_id)

    def to_json(self) -> dict[str, str]:
        """`{"task_id", "warrant_id"}`, for the sub-agent's `bind`."""
        return self.grant.to_json()


@dataclass(frozen=True, slots=True)
class SvidKey:
    """An X.509-SVID as the SDK signs with it: key, public JWK, thumbprint, chain."""

    spiffe_id: str
    private_key: Any = field(repr=False)
    jwk: Mapping[str, str]
    jkt: str
    x5c: tuple[str, ...]  # standard base64 DER, leaf first
    not_after: float
    serial: int

    @classmethod
    def from_chain(
        cls, spiffe_id: str, private_key: Any, chain: Sequence[x509.Certificate]
    ) -> SvidKey:
        """Compute the JWK, thumbprint and `x5c` once (`chain`: leaf, then intermediates)."""
        jwk = public_jwk(private_key)
        leaf = chain[0]
        return cls(
            spiffe_id=spiffe_id,
            private_key=private_key,
            jwk=jwk,
            jkt=thumbprint(jwk),
            x5c=tuple(encode_x5c([c.public_bytes(Encoding.DER) for c in chain])),
            not_after=leaf.not_valid_after_utc.timestamp(),
            serial=leaf.serial_number,
        )


def encode_x5c(chain_der: Sequence[bytes]) -> list[str]:
    """RFC 7517 `x5c`: standard (not URL-safe), padded base64 of each DER certificate."""
    return [base64.b64encode(der).decode("ascii") for der in chain_der]


def as_grant(value: Grant | Delegation | Mapping[str, Any]) -> Grant:
    """A `Grant` from a grant, a delegation, or its JSON form `{"task_id", "warrant_id"?}`.

    Raises:
        ValueError: the JSON form has no task id, or members that are not strings.
    """
    if isinstance(value, Grant):
        return value
    if isinstance(value, Delegation):
        return value.grant
    task_id, warrant_id = value.get("task_id"), value.get("warrant_id")
    if not isinstance(task_id, str) or not task_id:
        raise ValueError("a grant names its task_id")
    if warrant_id is not None and (not isinstance(warrant_id, str) or not warrant_id):
        raise ValueError("a grant's warrant_id is a non-empty string")
    return Grant(task_id, warrant_id)


__all__ = [
    "BoundWarrant",
    "CallResult",
    "Delegation",
    "Grant",
    "Reason",
    "SvidKey",
    "as_grant",
    "encode_x5c",
]
