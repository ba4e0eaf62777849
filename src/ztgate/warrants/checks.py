"""The `warrant`, `proof` and `scope` checks: a call is the task's, proven, and within scope.

They run after `authenticate`, in this order:

- `warrant`: the call carries a warrant signed by this gateway, for the
  authenticated agent, unexpired, whose task is active and which (nor any
  warrant above it) is not revoked. Verified warrants are cached by hash
  until they expire; task state and revocation are checked on every call.
- `proof`: the call carries a proof signed by the key the warrant is bound
  to, made for this tool, these arguments (their RFC 8785 hash), this task
  and this warrant, for this gateway, within the freshness window, and never
  seen before (its `jti` is remembered in hot state for twice the window).
- `scope`: the tool is in the warrant's scope and the arguments within its limits.

Each passes what it verified to the next through the call context's facts.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from ztgate.identity.check import NAME as AUTHENTICATE
from ztgate.models import Decision, Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext
from ztgate.store.hot import HotState
from ztgate.warrants import proof as proofs
from ztgate.warrants import token as warrants
from ztgate.warrants.live import TaskSnapshot
from ztgate.warrants.token import Warrant

WARRANT = "warrant"
PROOF = "proof"
SCOPE = "scope"
FACT = "warrant.verified"  # the verified `Warrant`, for the checks after this one
DEFAULT_CACHE_SIZE = 10_000


class WarrantCheck:
    """Pre-call check: a valid warrant of an active task, for the authenticated agent."""

    name = WARRANT

    def __init__(
        self,
        *,
        keys: Mapping[str, Any],
        issuer: str,
        audience: str,
        snapshot: Callable[[], TaskSnapshot],
        skew: float = 0.0,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        """`keys` maps kid to the public keys warrants verify with."""
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._snapshot = snapshot
        self._skew = skew
        self._cache: OrderedDict[bytes, Warrant] = OrderedDict()
        self._cache_size = cache_size

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow with the warrant's facts, or deny with the reason."""
        token = call.credentials.warrant
        if not token:
            return _deny(
                WARRANT, "no warrant: send the task's warrant in the Ztgate-Warrant header"
            )
        now = ctx.clock.now()
        try:
            warrant = self._verified(token, now)
        except warrants.WarrantError as exc:
            return _deny(WARRANT, f"warrant: {exc.message}")
        agent = ctx.facts.get("principal.spiffe_id")
        if agent is None:
            return _deny(WARRANT, "the caller is not authenticated")
        if agent != warrant.agent:
            return _deny(WARRANT, f"the warrant is for {warrant.agent}, not for {agent}")
        refused = self._snapshot().refusal(warrant, now)
        if refused is not None:
            return _deny(WARRANT, refused)
        facts: dict[str, Any] = {
            FACT: warrant,
            "task.id": warrant.task_id,
            "warrant.id": warrant.id,
            "warrant.depth": warrant.depth,
            "warrant.delegated_by": list(warrant.actors),
        }
        return Verdict(
            WARRANT, Outcome.ALLOW, f"warrant {warrant.id} of task {warrant.task_id}", facts
        )

    def _verified(self, token: str, now: float) -> Warrant:
        key = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        hit = self._cache.get(key)
        if hit is not None and now <= hit.expires_at + self._skew:
            self._cache.move_to_end(key)
            return hit
        warrant = warrants.verify(
            token,
            self._keys,
            issuer=self._issuer,
            audience=self._audience,
            now=now,
            skew=self._skew,
        )
        self._cache[key] = warrant
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return warrant


class ProofCheck:
    """Pre-call check: a fresh, unused proof for exactly this call, by the warrant's key."""

    name = PROOF

    def __init__(
        self,
        *,
        audience: str,
        hot: HotState,
        window: float = proofs.DEFAULT_WINDOW,
        verifier: proofs.ProofVerifier | None = None,
    ) -> None:
        """Proofs must be within `window` seconds of now; their ids are kept for 2 x window."""
        self._audience = audience
        self._hot = hot
        self._window = window
        self._verifier = verifier or proofs.ProofVerifier()

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow, or deny naming what does not match."""
        warrant = ctx.facts.get(FACT)
        if not isinstance(warrant, Warrant):
            return _deny(PROOF, "no verified warrant to check the proof against")
        presented = call.credentials.proof
        if not presented:
            return _deny(PROOF, "no proof: sign each call and send it in the Ztgate-Proof header")
        try:
            proof = await self.accept(
                presented,
                jkt=warrant.jkt,
                task_id=warrant.task_id,
                ath=warrant.ath,
                canonical=call.canonical_arguments,
                now=ctx.clock.now(),
                tool=call.tool,
            )
        except proofs.ProofError as exc:
            return _deny(PROOF, f"proof: {exc.message}")
        return Verdict(PROOF, Outcome.ALLOW, "proof verified", {"proof.jti": proof.jti})

    async def accept(
        self,
        presented: str,
        *,
        jkt: str,
        task_id: str,
        ath: str,
        canonical: bytes,
        now: float,
        tool: str | None = None,
        op: str | None = None,
    ) -> proofs.Proof:
        """Verify a proof for one request (a call or a gateway operation) and use up its `jti`.

        Raises:
            ProofError: it does not verify, does not match the request, or was used before.
        """
        proof = self._verifier.verify(presented, jkt=jkt)
        proofs.expect(
            proof,
            audience=self._audience,
            task_id=task_id,
            ath=ath,
            canonical=canonical,
            now=now,
            window=self._window,
            tool=tool,
            op=op,
        )
        if not await self._hot.remember_once(f"proof:{proof.jti}", 2 * self._window):
            raise proofs.ProofError("already used (replay)")
        return proof


class ScopeCheck:
    """Pre-call check: the tool is in the warrant's scope and the arguments within its limits."""

    name = SCOPE

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow, or deny naming the argument and the limit that failed."""
        warrant = ctx.facts.get(FACT)
        if not isinstance(warrant, Warrant):
            return _deny(SCOPE, "no verified warrant to take the scope from")
        why = warrant.scope.violation(call.tool, call.arguments)
        if why is not None:
            return _deny(SCOPE, why)
        return Verdict(SCOPE, Outcome.ALLOW, "within the task's scope", {"scope.within": True})


def _deny(check: str, reason: str) -> Verdict:
    return Verdict(check, Outcome.DENY, reason[:500])


def proven_caller(decision: Decision) -> tuple[str | None, str | None]:
    """The SPIFFE ID the `authenticate` check verified and the task the `warrant` check did
    (from their allowing verdicts only: nothing a refused check saw)."""
    spiffe_id = task_id = None
    for verdict in decision.verdicts:
        if verdict.outcome is not Outcome.ALLOW:
            continue
        if verdict.check == AUTHENTICATE:
            found = verdict.facts.get("principal.spiffe_id")
            spiffe_id = found if isinstance(found, str) else None
        elif verdict.check == WARRANT:
            found = verdict.facts.get("task.id")
            task_id = found if isinstance(found, str) else None
    return spiffe_id, task_id
