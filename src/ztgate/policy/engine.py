"""One Cedar request against a loaded policy set: allow, ask or deny, and why.

Cedar's own rules: nothing is allowed unless a `permit` is satisfied, and a
satisfied `forbid` wins over any permit. ztgate adds two:

- **Ask.** A satisfied permit annotated `@ask("why")` turns an allow into
  "ask a human". Ask is stricter than allow, so one asking permit is enough,
  whatever other permits say; a forbid still wins over it.
- **Fail closed.** Cedar skips a policy whose evaluation fails (an overflow,
  a missing entity or attribute) and decides without it; ztgate denies the
  call instead, naming the policy and the error. So does an exception from
  the engine, and a decision that names a policy the set does not have.

Error messages are scrubbed of quoted strings, which may carry argument values.

Within one loaded set, Cedar's answer is kept per exact request, and its
meaning per exact answer (decision, policy ids, error texts): the same
request always gets the same answer, which always means the same thing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import cedarpy

from ztgate.models import Outcome
from ztgate.policy.arguments import ArgumentTypeError
from ztgate.policy.entities import Request, RequestError, build
from ztgate.policy.model import CallFacts, Evaluation, PolicySnapshot, Rule

logger = logging.getLogger(__name__)
MAX_REASON_CHARS = 500
_LISTED = 3
_QUOTED_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def decide(snapshot: PolicySnapshot, facts: CallFacts) -> Evaluation:
    """What the policies say about a call with these facts (never raises).

    An argument of the wrong type, or a tool the set was not loaded for,
    cannot be put to the policies: deny, with the reason.
    """
    try:
        request = build(snapshot, facts)
    except (ArgumentTypeError, RequestError) as exc:
        return Evaluation(Outcome.DENY, _cut(f"{exc} (fail closed)"))
    return evaluate(snapshot, request)


def evaluate(snapshot: PolicySnapshot, request: Request) -> Evaluation:
    """What the policies in `snapshot` say about `request` (never raises).

    What the engine answered is kept with the set for the exact request
    (`Request.key()`: Cedar decides from the request, the entities and the
    policies alone, and the key fixes all three within one set), so an
    identical request is not put to the engine again. A failure of the
    engine is never kept.
    """
    key = request.key()
    kept = snapshot.decided(key)
    if kept is not None:
        return kept
    try:
        said = _said(cedarpy.is_authorized(request.cedar(), snapshot.policies, request.entities))
    except BaseException as exc:  # fail closed, on a panic in the engine too
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        logger.exception("the policy engine failed")
        return Evaluation(Outcome.DENY, f"the policy engine failed: {type(exc).__name__}")
    evaluation = snapshot.evaluation(said, lambda: _interpret(snapshot, *said))
    snapshot.keep(key, evaluation)
    return evaluation


def interpret(snapshot: PolicySnapshot, result: cedarpy.AuthzResult) -> Evaluation:
    """Turn Cedar's answer into an evaluation, failing closed on any error."""
    return _interpret(snapshot, *_said(result))


def _said(result: cedarpy.AuthzResult) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """Cedar's answer, exactly: the decision, the deciding policy ids, the error texts."""
    diagnostics = result.diagnostics
    return result.decision.value, tuple(diagnostics.reasons), tuple(diagnostics.errors)


def _interpret(
    snapshot: PolicySnapshot, decided: str, reasons: tuple[str, ...], found_errors: tuple[str, ...]
) -> Evaluation:
    errors = tuple(scrub(str(error)) for error in found_errors)
    rules = snapshot.rules
    unknown = [pid for pid in reasons if pid not in rules]
    found = [rules[pid] for pid in reasons if pid in rules]
    if len(found) > 1:
        found.sort(key=lambda rule: (rule.file, rule.line))
    satisfied = tuple(found)
    if errors:
        return Evaluation(
            Outcome.DENY,
            _cut(f"a policy could not be evaluated, so the call is denied: {errors[0]}"),
            satisfied=satisfied,
            errors=errors,
        )
    if unknown:
        return Evaluation(Outcome.DENY, f"the engine named an unknown policy {unknown[0]!r}")
    decision = cedarpy.Decision[decided]
    if decision is cedarpy.Decision.Deny:
        forbids = tuple(rule for rule in satisfied if rule.effect == "forbid")
        if forbids:
            return Evaluation(
                Outcome.DENY, _cut("forbidden by " + said(forbids)), forbids, satisfied
            )
        return Evaluation(Outcome.DENY, "no policy permits this call (default deny)")
    if decision is cedarpy.Decision.Allow and satisfied:
        asks = tuple(rule for rule in satisfied if rule.ask is not None)
        if asks:
            return Evaluation(
                Outcome.ASK, _cut("approval required by " + said(asks)), asks, satisfied
            )
        return Evaluation(
            Outcome.ALLOW, _cut("permitted by " + said(satisfied)), satisfied, satisfied
        )
    return Evaluation(Outcome.DENY, f"the policy engine gave no decision ({decision.value})")


def said(rules: Sequence[Rule]) -> str:
    """The deciding policies, and what their annotations say (each once, in policy order)."""
    labels = [rule.label for rule in rules[:_LISTED]]
    if len(rules) > _LISTED:
        labels.append(f"{len(rules) - _LISTED} more")
    whys = list(dict.fromkeys(why for rule in rules if (why := rule.ask or rule.reason)))
    return ", ".join(labels) + (f": {'; '.join(whys)}" if whys else "")


def scrub(message: str) -> str:
    """`message` with quoted strings elided and whitespace folded."""
    return " ".join(_QUOTED_STRING.sub('"…"', message).split())


def _cut(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"
