"""The gateway's warrant runtime: the checks, the live task view, and the agents' operations.

Agents do two things with warrants besides calling tools, both proven like a
call (authenticated, with a single-use proof over the request body):

- `bind`: receive a warrant signed for their current SVID key. The request
  carries the agent's X.509-SVID chain (or comes over mTLS with it): the
  chain authenticates the agent and certifies the key, and the proof shows
  the agent holds that key. So a stolen JWT-SVID cannot bind a warrant to an
  attacker's key.
- `delegate`: give a sub-agent a narrower warrant of the same task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from ztgate.canonical import canonical_json
from ztgate.clock import Clock
from ztgate.config import Settings
from ztgate.errors import ConflictError, GatewayError, InvalidInputError, NotFoundError
from ztgate.identity.check import AuthenticationCheck, split_der_chain
from ztgate.models import Credentials, Outcome, ToolCall
from ztgate.pipeline import CallContext, Check
from ztgate.store.database import Database
from ztgate.store.hot import HotState
from ztgate.tasks.registry import TaskRegistry
from ztgate.warrants import proof as proofs
from ztgate.warrants.checks import FACT, ProofCheck, ScopeCheck, WarrantCheck
from ztgate.warrants.jwk import key_thumbprint
from ztgate.warrants.live import LiveTasks
from ztgate.warrants.token import Warrant, warrant_hash

UNBOUND_ATH = warrant_hash("")  # a bind proof goes with no warrant yet


class OperationRefused(GatewayError):
    """An agent's warrant operation was refused: `status` and the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class BindRequest:
    """`POST /v1/warrants/bind`, parsed."""

    task_id: str
    warrant_id: str | None
    chain: bytes  # concatenated DER, leaf first
    canonical: bytes  # the body's RFC 8785 form, what the proof signs


class WarrantService:
    """Warrant checks and operations for one gateway."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        clock: Clock,
        hot: HotState,
        registry: TaskRegistry,
    ) -> None:
        """Build the checks over `registry`'s key; the task view is read in `start`."""
        self.registry = registry
        self.live = LiveTasks(database, clock)
        self._clock = clock
        self.warrant_check = WarrantCheck(
            keys={registry.key.kid: registry.key.public_key},
            issuer=registry.issuer,
            audience=registry.audience,
            snapshot=lambda: self.live.snapshot,
            skew=float(settings.identity.clock_skew_seconds),
        )
        self.proof_check = ProofCheck(
            audience=settings.gateway.audience,
            hot=hot,
            window=float(settings.warrants.proof_window_seconds),
        )
        self.scope_check = ScopeCheck()

    def checks(self) -> list[Check]:
        """The pre-call checks, in order (after `authenticate`)."""
        return [self.warrant_check, self.proof_check, self.scope_check]

    def start(self) -> None:
        """Read the task view."""
        self.live.reload()

    def changed(self) -> None:
        """Reload the task view (the "tasks" generation moved)."""
        self.live.reload()

    # -- bind ----------------------------------------------------------------------

    async def bind(
        self, authenticate: AuthenticationCheck, request: BindRequest, proof: str | None
    ) -> tuple[str, Any]:
        """Authenticate by the X.509-SVID, check the proof, bind; the agent and the issued warrant.

        Raises:
            OperationRefused: 401 unauthenticated, 403 a bad proof or an
                unusable task or warrant, 404 no such task or warrant.
        """
        call = _synthetic(Credentials(client_certificate=request.chain))
        ctx = CallContext(self._clock)
        verdict = await authenticate(call, ctx)
        if verdict.outcome is not Outcome.ALLOW:
            raise OperationRefused(401, verdict.reason)
        agent = str(verdict.facts["principal.spiffe_id"])
        try:
            leaf = x509.load_der_x509_certificate(split_der_chain(request.chain)[0])
            jkt = key_thumbprint(leaf.public_key())
        except (ValueError, InvalidInputError) as exc:
            raise OperationRefused(401, f"the SVID's key cannot be used: {exc}") from exc
        await self._proof(proof, jkt, request.task_id, UNBOUND_ATH, request.canonical, "bind")
        try:
            issued = await asyncio.to_thread(
                self.registry.bind,
                agent=agent,
                jkt=jkt,
                task_id=request.task_id,
                warrant_id=request.warrant_id,
            )
        except NotFoundError as exc:
            raise OperationRefused(404, exc.message) from exc
        except (ConflictError, InvalidInputError) as exc:
            raise OperationRefused(403, exc.message) from exc
        return agent, issued

    # -- delegate ------------------------------------------------------------------

    async def delegate(
        self,
        authenticate: AuthenticationCheck,
        credentials: Credentials,
        body: Mapping[str, Any],
        canonical: bytes,
    ) -> tuple[Warrant, Any, str | None]:
        """Authenticate, check the parent warrant and the proof, delegate.

        Returns the parent warrant, the new warrant's record, and its token
        when the body named the sub-agent's key.

        Raises:
            OperationRefused: 401, 403 (with the reason: a widened scope, a
                longer expiry, the depth limit, a bad proof), 422 a malformed body.
        """
        call = _synthetic(credentials)
        ctx = CallContext(self._clock)
        verdict = await authenticate(call, ctx)
        if verdict.outcome is not Outcome.ALLOW:
            raise OperationRefused(401, verdict.reason)
        ctx.facts.update(verdict.facts)
        checked = await self.warrant_check(call, ctx)
        if checked.outcome is not Outcome.ALLOW:
            raise OperationRefused(403, f"warrant: {checked.reason}")
        parent: Warrant = checked.facts[FACT]
        await self._proof(
            credentials.proof, parent.jkt, parent.task_id, parent.ath, canonical, "delegate"
        )
        agent, scope, ttl, jkt = _delegation_fields(body)
        try:
            record, token = await asyncio.to_thread(
                self.registry.delegate, parent, agent=agent, scope=scope, ttl=ttl, jkt=jkt
            )
        except (ConflictError, InvalidInputError) as exc:
            raise OperationRefused(403, exc.message) from exc
        return parent, record, token

    # -- what a warrant allows -------------------------------------------------------

    async def warrant_of(
        self, authenticate: AuthenticationCheck, credentials: Credentials
    ) -> Warrant:
        """Authenticate the caller and verify its warrant, with no proof: nothing runs.

        What an MCP `tools/list` needs to show an agent only its scope's tools.

        Raises:
            OperationRefused: 401 not authenticated, 403 no valid warrant for this agent.
        """
        call = _synthetic(credentials)
        ctx = CallContext(self._clock)
        verdict = await authenticate(call, ctx)
        if verdict.outcome is not Outcome.ALLOW:
            raise OperationRefused(401, verdict.reason)
        ctx.facts.update(verdict.facts)
        checked = await self.warrant_check(call, ctx)
        if checked.outcome is not Outcome.ALLOW:
            raise OperationRefused(403, f"warrant: {checked.reason}")
        warrant: Warrant = checked.facts[FACT]
        return warrant

    async def _proof(
        self, presented: str | None, jkt: str, task_id: str, ath: str, canonical: bytes, op: str
    ) -> None:
        if not presented:
            raise OperationRefused(403, "no proof: sign the request and send it as Ztgate-Proof")
        try:
            await self.proof_check.accept(
                presented,
                jkt=jkt,
                task_id=task_id,
                ath=ath,
                canonical=canonical,
                now=self._clock.now(),
                op=op,
            )
        except proofs.ProofError as exc:
            raise OperationRefused(403, f"proof: {exc.message}") from exc


def _synthetic(credentials: Credentials) -> ToolCall:
    return ToolCall(
        call_id="",
        tool="",
        arguments={},
        canonical_arguments=canonical_json({}),
        credentials=credentials,
    )


def _delegation_fields(body: Mapping[str, Any]) -> tuple[str, Any, float | None, str | None]:
    allowed = {"agent", "scope", "expires_in_seconds", "jkt"}
    unknown = set(body) - allowed
    if unknown:
        raise OperationRefused(422, f"unknown field {sorted(unknown)[0]!r} in the body")
    agent = body.get("agent")
    if not isinstance(agent, str):
        raise OperationRefused(422, "agent: the sub-agent's SPIFFE ID is required")
    ttl = body.get("expires_in_seconds")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)):
        raise OperationRefused(422, "expires_in_seconds: a number of seconds")
    jkt = body.get("jkt")
    if jkt is not None and not isinstance(jkt, str):
        raise OperationRefused(422, "jkt: the sub-agent's key thumbprint (RFC 7638)")
    return agent, body.get("scope"), None if ttl is None else float(ttl), jkt
