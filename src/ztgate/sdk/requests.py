"""Pure functions: the HTTP requests an agent sends and the reading of the gateway's answers.

No I/O here: the sync and async clients send what these build and hand back
what they received. Every request that uses a warrant carries a fresh proof
signed with the SVID key it is given (`ztgate.warrants.proof`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from ztgate.canonical import canonical_json
from ztgate.egress.request import EGRESS_TOOL, egress_arguments, parse_authority
from ztgate.egress.request import RequestError as EgressRequestError
from ztgate.errors import InvalidInputError
from ztgate.sdk.errors import (
    ApprovalPending,
    CallDenied,
    CallFailed,
    CallTimeout,
    TransportError,
    Unauthenticated,
    ZtgateError,
)
from ztgate.sdk.models import BoundWarrant, CallResult, Delegation, Grant, Reason, SvidKey
from ztgate.warrants import proof

CALLS = "/v1/calls"
BIND = "/v1/warrants/bind"
DELEGATE = "/v1/warrants/delegate"
TASKS = "/v1/tasks"
PROOF_HEADER = "Ztgate-Proof"
WARRANT_HEADER = "Ztgate-Warrant"
APPROVAL_HEADER = "Ztgate-Approval"
APPROVALS = "/v1/approvals"
_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request to send: method, path (relative to the gateway's URL), headers, body."""

    method: str
    path: str
    headers: Mapping[str, str]
    content: bytes


def _canonical(value: Any, what: str) -> bytes:
    try:
        return canonical_json(value)
    except InvalidInputError as exc:
        raise ValueError(f"{what}: {exc.message}") from exc


def canonical_arguments(arguments: Any) -> bytes:
    """The RFC 8785 form of a call's arguments, which its proof signs.

    Raises:
        ValueError: the arguments have no canonical JSON form (NaN, ...).
    """
    return _canonical(arguments, "arguments")


def _headers(bearer: str | None, **extra: str) -> dict[str, str]:
    headers = {"Content-Type": _JSON, "Accept": _JSON}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    headers.update(extra)
    return headers


def bind_request(
    svid: SvidKey, grant: Grant, *, audience: str, issued_at: float, bearer: str | None = None
) -> HttpRequest:
    """`POST /v1/warrants/bind`: bind `grant` to `svid`'s key, proving it holds the key."""
    body: dict[str, Any] = {"task_id": grant.task_id, "x5c": list(svid.x5c)}
    if grant.warrant_id is not None:
        body["warrant_id"] = grant.warrant_id
    canonical = _canonical(body, "bind")
    signed = proof.sign(
        svid.private_key,
        audience=audience,
        task_id=grant.task_id,
        warrant="",
        canonical=canonical,
        op="bind",
        issued_at=issued_at,
        jwk=svid.jwk,
    )
    return HttpRequest("POST", BIND, _headers(bearer, **{PROOF_HEADER: signed}), canonical)


def call_request(
    svid: SvidKey,
    warrant: BoundWarrant,
    tool: str,
    arguments: Mapping[str, Any],
    *,
    audience: str,
    issued_at: float,
    bearer: str,
    justification: str | None = None,
    approval: str | None = None,
) -> HttpRequest:
    """`POST /v1/calls`: call `tool` under `warrant`, with a proof over these arguments.

    `approval` is the id of the approval a principal gave this very call.
    """
    canonical = _canonical(arguments, "arguments")
    signed = proof.sign(
        svid.private_key,
        audience=audience,
        task_id=warrant.task_id,
        warrant=warrant.token,
        canonical=canonical,
        tool=tool,
        issued_at=issued_at,
        jwk=svid.jwk,
    )
    # The body embeds the canonical arguments already computed for the proof.
    content = b'{"tool":' + orjson.dumps(tool) + b',"arguments":' + canonical
    if justification is not None:
        content += b',"justification":' + orjson.dumps(justification)
    content += b"}"
    headers = _headers(bearer, **{WARRANT_HEADER: warrant.token, PROOF_HEADER: signed})
    if approval is not None:
        headers[APPROVAL_HEADER] = approval
    return HttpRequest("POST", CALLS, headers, content)


def proxy_headers(
    svid: SvidKey,
    warrant: BoundWarrant,
    host: str,
    port: int,
    *,
    method: str,
    audience: str,
    issued_at: float,
    bearer: str,
) -> dict[str, str]:
    """The headers of one connection through the gateway's egress proxy (`egress/agents.py`).

    `Proxy-Authorization: Bearer` with the JWT-SVID, the warrant, and a proof
    for the tool `egress` over exactly this destination: one proof, one
    connection (a second connection with the same headers is a replay).

    Raises:
        ValueError: `host:port` is not a destination the proxy would read.
    """
    try:
        # An IPv6 address comes bare (httpcore gives `::1`); the proxy reads `[::1]:port`.
        bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
        destination = parse_authority(f"{bracketed}:{port}")
    except EgressRequestError as exc:
        raise ValueError(f"not a destination for the egress proxy: {exc.reason}") from exc
    arguments = egress_arguments(method, destination.host, destination.port)
    signed = proof.sign(
        svid.private_key,
        audience=audience,
        task_id=warrant.task_id,
        warrant=warrant.token,
        canonical=canonical_json(arguments),
        tool=EGRESS_TOOL,
        issued_at=issued_at,
        jwk=svid.jwk,
    )
    return {
        "Proxy-Authorization": f"Bearer {bearer}",
        WARRANT_HEADER: warrant.token,
        PROOF_HEADER: signed,
    }


def wait_request(approval_id: str, timeout: float) -> HttpRequest:
    """`GET /v1/approvals/{id}/wait`: long-poll until decided, or `timeout` seconds (at most 60)."""
    seconds = max(0.0, min(timeout, 60.0))
    path = f"{APPROVALS}/{quote(approval_id, safe='')}/wait?timeout={seconds:g}"
    return HttpRequest("GET", path, {"Accept": _JSON}, b"")


def parse_wait(response: httpx.Response) -> tuple[str, str]:
    """A waited-on approval's state (pending, approved, rejected, used, expired) and why."""
    if response.status_code != 200:
        raise error_for(response)
    approval = _field(_object(response), "approval", dict, 200)
    reason = approval.get("reason")
    return _field(approval, "state", str, 200), reason if isinstance(reason, str) else ""


def delegate_request(
    svid: SvidKey,
    warrant: BoundWarrant,
    agent: str,
    *,
    audience: str,
    issued_at: float,
    bearer: str,
    scope: Mapping[str, Any] | None = None,
    expires_in_seconds: int | None = None,
) -> HttpRequest:
    """`POST /v1/warrants/delegate`: a narrower warrant under `warrant` for `agent`."""
    body: dict[str, Any] = {"agent": agent}
    if scope is not None:
        body["scope"] = scope
    if expires_in_seconds is not None:
        body["expires_in_seconds"] = expires_in_seconds
    canonical = _canonical(body, "delegation")
    signed = proof.sign(
        svid.private_key,
        audience=audience,
        task_id=warrant.task_id,
        warrant=warrant.token,
        canonical=canonical,
        op="delegate",
        issued_at=issued_at,
        jwk=svid.jwk,
    )
    headers = _headers(bearer, **{WARRANT_HEADER: warrant.token, PROOF_HEADER: signed})
    return HttpRequest("POST", DELEGATE, headers, canonical)


# -- answers ------------------------------------------------------------------------------


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise TransportError(
            f"the gateway answered {response.status_code} with a body that is not JSON",
            status=response.status_code,
        ) from None


def _object(response: httpx.Response) -> dict[str, Any]:
    data = _json(response)
    if not isinstance(data, dict):
        raise TransportError(
            f"the gateway answered {response.status_code} with JSON that is not an object",
            status=response.status_code,
        )
    return data


def _field(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], status: int) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TransportError(f"the gateway's answer has no valid {name!r}", status=status)
    return value


def _reasons(data: Mapping[str, Any], key: str) -> tuple[Reason, ...]:
    raw = data.get(key)
    return tuple(Reason.from_json(item) for item in raw) if isinstance(raw, list) else ()


def error_for(response: httpx.Response) -> ZtgateError:
    """The exception an error answer (a problem document, or anything else) stands for."""
    status = response.status_code
    try:
        problem = _object(response)
    except TransportError:
        problem = {}
    call_id = problem.get("call_id") if isinstance(problem.get("call_id"), str) else None
    detail = problem.get("detail")
    message = detail if isinstance(detail, str) and detail else f"HTTP {status}"
    kwargs: dict[str, Any] = {"status": status, "call_id": call_id, "problem": problem}
    if status == 401:
        return Unauthenticated(message, **kwargs)
    if status == 403:
        return CallDenied(message, reasons=_reasons(problem, "reasons"), **kwargs)
    if status == 504:
        return CallTimeout(message, **kwargs)
    if not problem:
        return TransportError(f"the gateway answered {status} without a problem document", **kwargs)
    return CallFailed(message, **kwargs)


def parse_call(response: httpx.Response) -> CallResult:
    """The result of an allowed call.

    Raises:
        ApprovalPending: 202, the call waits for a principal's approval.
        ZtgateError: any error answer, as `error_for` maps it.
    """
    status = response.status_code
    if status == 202:
        data = _object(response)
        call_id = data.get("call_id") if isinstance(data.get("call_id"), str) else None
        detail = data.get("detail")
        return_reasons = _reasons(data, "reasons") or _reasons(data, "verdicts")
        approval = data.get("approval")
        approval = approval if isinstance(approval, dict) else {}
        approval_id = approval.get("id")
        expires_at = approval.get("expires_at")
        raise ApprovalPending(
            detail if isinstance(detail, str) and detail else "the call awaits approval",
            reasons=return_reasons,
            call_id=call_id,
            problem=data,
            approval_id=approval_id if isinstance(approval_id, str) else None,
            expires_at=float(expires_at) if isinstance(expires_at, (int, float)) else None,
        )
    if status != 200:
        raise error_for(response)
    data = _object(response)
    return CallResult(
        call_id=_field(data, "call_id", str, status),
        result=data.get("result"),
        verdicts=_reasons(data, "verdicts"),
    )


def _claims(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified: the agent only reads what the gateway bound it to."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def parse_bind(response: httpx.Response, *, expected_jkt: str) -> BoundWarrant:
    """The warrant the gateway bound to the key with thumbprint `expected_jkt`.

    Raises:
        ZtgateError: an error answer, or a warrant bound to another key.
    """
    status = response.status_code
    if status != 200:
        raise error_for(response)
    data = _object(response)
    token = _field(data, "warrant", str, status)
    cnf = _claims(token).get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if jkt != expected_jkt:
        raise TransportError("the gateway bound the warrant to another key", status=status)
    return BoundWarrant(
        token=token,
        warrant_id=_field(data, "warrant_id", str, status),
        task_id=_field(data, "task_id", str, status),
        jkt=jkt,
        expires_at=float(_field(data, "expires_at", (int, float), status)),
    )


def parse_delegate(response: httpx.Response) -> Delegation:
    """The delegated warrant, for the sub-agent to bind.

    Raises:
        CallDenied: the delegation would widen the scope (or another check refused it).
        ZtgateError: any other error answer.
    """
    status = response.status_code
    if status not in (200, 201):
        raise error_for(response)
    data = _object(response)
    return Delegation(
        warrant_id=_field(data, "warrant_id", str, status),
        task_id=_field(data, "task_id", str, status),
        expires_at=float(_field(data, "expires_at", (int, float), status)),
        depth=int(_field(data, "depth", int, status)),
    )


def parse_json(response: httpx.Response, *, expect: tuple[int, ...] = (200, 201)) -> dict[str, Any]:
    """A JSON object answer with one of the `expect` statuses.

    Raises:
        ZtgateError: any other answer, as `error_for` maps it.
    """
    if response.status_code not in expect:
        raise error_for(response)
    return _object(response)
