"""Warrants: task-scoped JWTs signed by ztgate and bound to one agent's key.

A warrant is a JWT (RFC 7519), `typ` `ztgate-warrant+jwt`, ES256, naming:

    iss     the gateway's issuer name
    sub     the agent's SPIFFE ID
    aud     the gateway's audience
    jti     the warrant's id (kept when the warrant is re-bound to a rotated key)
    iat/exp when it was issued and when it expires
    task    the task's id
    scope   the tools and argument limits (see `ztgate.tasks.scope`)
    cnf     {"jkt": RFC 7638 thumbprint of the agent's SVID public key} (RFC 7800)
    act     for a delegated warrant, the delegating agent, nested (RFC 8693)
    chain   for a delegated warrant, the ids of the warrants above it, root first

A warrant alone proves nothing: every call must also carry a proof signed
by the key `cnf` names (`ztgate.warrants.proof`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from ztgate.errors import InvalidInputError
from ztgate.identity.spiffe_id import parse_spiffe_id
from ztgate.tasks.scope import Scope, parse_scope
from ztgate.warrants.jwk import b64url
from ztgate.warrants.keys import ALGORITHM, WarrantKey

TYP = "ztgate-warrant+jwt"
MAX_WARRANT_CHARS = 32 * 1024
_REQUIRED = ("iss", "sub", "aud", "jti", "iat", "exp", "task", "scope", "cnf")


class WarrantError(InvalidInputError):
    """A warrant that does not verify (the message says why)."""


@dataclass(frozen=True, slots=True)
class Warrant:
    """A verified warrant's claims."""

    id: str
    task_id: str
    agent: str
    scope: Scope
    jkt: str
    issued_at: float
    expires_at: float
    chain: tuple[str, ...] = ()
    actors: tuple[str, ...] = ()  # the delegating agents, nearest first
    ath: str = ""  # base64url SHA-256 of the token, what proofs name

    @property
    def depth(self) -> int:
        """0 for a task's own warrant, n for one delegated n times."""
        return len(self.chain)

    @property
    def lineage(self) -> tuple[str, ...]:
        """This warrant's id and every one above it."""
        return (*self.chain, self.id)


def warrant_hash(token: str) -> str:
    """The `ath` of a warrant: base64url SHA-256 of its ASCII (as RFC 9449 hashes tokens)."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def issue(
    key: WarrantKey,
    *,
    issuer: str,
    audience: str,
    warrant_id: str,
    task_id: str,
    agent: str,
    scope: Scope,
    jkt: str,
    issued_at: float,
    expires_at: float,
    chain: Sequence[str] = (),
    actors: Sequence[str] = (),
) -> str:
    """Sign a warrant."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": agent,
        "aud": audience,
        "jti": warrant_id,
        "iat": int(issued_at),
        "exp": int(expires_at),
        "task": task_id,
        "scope": scope.to_json(),
        "cnf": {"jkt": jkt},
    }
    if actors:
        act: dict[str, Any] | None = None
        for actor in reversed(actors):  # the nearest delegator is the outermost `act`
            act = {"sub": actor, **({"act": act} if act else {})}
        claims["act"] = act
        claims["chain"] = list(chain)
    headers = {"typ": TYP, "kid": key.kid}
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers=headers)


def verify(
    token: str,
    keys: Mapping[str, Any],
    *,
    issuer: str,
    audience: str,
    now: float,
    skew: float = 0.0,
) -> Warrant:
    """Verify a warrant's signature, type, issuer, audience and lifetime; parse its claims.

    `keys` maps `kid` to public key. Task state and revocation are checked by
    the caller: they change after issuance.

    Raises:
        WarrantError: says which property failed.
    """
    if not isinstance(token, str) or len(token) > MAX_WARRANT_CHARS:
        raise WarrantError(f"a warrant is a JWT of at most {MAX_WARRANT_CHARS} characters")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise WarrantError(f"not a JWT: {exc}") from exc
    if header.get("typ") != TYP:
        raise WarrantError(f"not a warrant (typ must be {TYP!r})")
    if header.get("alg") != ALGORITHM:
        raise WarrantError(f"a warrant is signed with {ALGORITHM}")
    key = keys.get(str(header.get("kid")))
    if key is None:
        raise WarrantError("signed by a key this gateway does not know")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=skew,
            # Lifetime is checked below against the gateway's clock, not PyJWT's.
            options={
                "require": list(_REQUIRED),
                "verify_iat": False,
                "verify_exp": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise WarrantError(str(exc)) from exc
    if not all(isinstance(claims[c], int | float) for c in ("iat", "exp")):
        raise WarrantError("iat and exp must be numbers")
    if now > float(claims["exp"]) + skew:
        raise WarrantError("expired")
    if float(claims["iat"]) > now + skew:
        raise WarrantError("issued in the future")
    return _parse(claims, warrant_hash(token))


def _parse(claims: Mapping[str, Any], ath: str) -> Warrant:
    cnf = claims["cnf"]
    if not isinstance(cnf, Mapping) or not isinstance(cnf.get("jkt"), str):
        raise WarrantError("cnf names no key thumbprint (jkt)")
    chain = claims.get("chain", [])
    if not isinstance(chain, list) or not all(isinstance(c, str) for c in chain):
        raise WarrantError("chain is not a list of warrant ids")
    actors: list[str] = []
    act = claims.get("act")
    while act is not None:
        if not isinstance(act, Mapping) or not isinstance(act.get("sub"), str):
            raise WarrantError("act is not a delegation chain")
        actors.append(act["sub"])
        act = act.get("act")
    if len(actors) != len(chain):
        raise WarrantError("act and chain disagree about the delegation depth")
    for name in ("jti", "task", "sub"):
        if not isinstance(claims[name], str) or not claims[name]:
            raise WarrantError(f"{name} is not a string")
    try:
        parse_spiffe_id(claims["sub"])
        scope = parse_scope(claims["scope"])
    except InvalidInputError as exc:
        raise WarrantError(exc.message) from exc
    return Warrant(
        id=claims["jti"],
        task_id=claims["task"],
        agent=claims["sub"],
        scope=scope,
        jkt=cnf["jkt"],
        issued_at=float(claims["iat"]),
        expires_at=float(claims["exp"]),
        chain=tuple(chain),
        actors=tuple(actors),
        ath=ath,
    )
