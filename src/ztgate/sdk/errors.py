"""The exceptions the SDK raises: one type per thing an agent may want to handle.

    ZtgateError            anything below; `status`, `call_id`, `problem` when the gateway answered
    ├── Unauthenticated    401: no valid SVID (not registered, revoked, expired)
    ├── CallDenied         403: a check denied; `reasons` says which and why
    ├── ApprovalPending    202: the call was asked, a principal must approve it
    ├── CallTimeout        the gateway did not answer in time, or the tool did not (504)
    ├── CallFailed         any other error answer (400, 413, 422, 502, 503, ...)
    ├── TransportError     no usable answer: connection, TLS, or not the gateway's JSON
    └── IdentityError      no usable SVID from the Workload API

A call that raised `CallTimeout` or `TransportError` may or may not have
reached the tool: the SDK never retries a call (each proof is single-use).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from ztgate.sdk.models import Reason


class ZtgateError(Exception):
    """Base class of every error the SDK raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        call_id: str | None = None,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.call_id = call_id
        self.problem: Mapping[str, Any] = problem or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r})"


class Unauthenticated(ZtgateError):
    """The gateway did not accept the agent's identity (401)."""


class CallDenied(ZtgateError):
    """A check denied the call, the binding or the delegation (403).

    `reasons` holds each deciding check's `Reason` when the gateway names
    them (calls); otherwise `message` is the gateway's `detail`.
    """

    def __init__(
        self,
        message: str,
        *,
        reasons: tuple[Reason, ...] = (),
        status: int | None = 403,
        call_id: str | None = None,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status=status, call_id=call_id, problem=problem)
        self.reasons = reasons


class ApprovalPending(ZtgateError):
    """The call was asked (202): it runs only once a principal approves it.

    `approval_id` names the approval request (what approvers decide);
    `call_id` the asked call; `reasons` are the checks that asked;
    `expires_at` when the request lapses undecided. `tool`, `arguments` and
    `justification` are the call as asked: `wait_for_approval` re-sends
    exactly these, with a fresh proof and the approval.
    """

    def __init__(
        self,
        message: str,
        *,
        reasons: tuple[Reason, ...] = (),
        status: int | None = 202,
        call_id: str | None = None,
        problem: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
        expires_at: float | None = None,
    ) -> None:
        super().__init__(message, status=status, call_id=call_id, problem=problem)
        self.reasons = reasons
        self.approval_id = approval_id
        self.expires_at = expires_at
        self.tool: str | None = None
        self.arguments: Mapping[str, Any] = {}
        self.justification: str | None = None


class CallTimeout(ZtgateError):
    """No answer in time: from the gateway (`status` None) or from the tool (504)."""


class CallFailed(ZtgateError):
    """The gateway answered with an error other than a denial or a timeout."""


class TransportError(ZtgateError):
    """No usable answer: the connection or TLS failed, or the answer was not the gateway's."""


class IdentityError(ZtgateError):
    """The Workload API gave no usable SVID (unreachable, not registered, expired)."""


def from_httpx(exc: Exception) -> ZtgateError:
    """The SDK's exception for an httpx failure (a timeout, or no usable connection)."""
    if isinstance(exc, httpx.TimeoutException):
        return CallTimeout(f"no answer from the gateway in time ({type(exc).__name__})")
    return TransportError(f"could not reach the gateway: {type(exc).__name__}: {exc}")


__all__ = [
    "ApprovalPending",
    "CallDenied",
    "CallFailed",
    "CallTimeout",
    "IdentityError",
    "TransportError",
    "Unauthenticated",
    "ZtgateError",
    "from_httpx",
]
