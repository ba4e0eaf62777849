"""The proof: a single-use signature over one call, made with the agent's SVID key.

A compact JWS in the style of DPoP (RFC 9449): header `typ`
`ztgate-proof+jwt`, an asymmetric `alg`, and the public `jwk` it verifies
with; claims

    aud     the gateway's audience
    iat     when it was made (accepted within a window, default +-30 s)
    jti     a unique id (16-128 characters), never accepted twice
    task    the task's id
    ath     base64url SHA-256 of the warrant it goes with
    args    base64url SHA-256 of the request's canonical JSON (RFC 8785):
            the tool's arguments for a call, the body for a gateway operation
    tool    the tool called; or, for a gateway operation instead of a call,
    op      the operation (claim, delegate, renew)

The gateway checks that the `jwk` is the key the warrant is bound to (its
thumbprint is the warrant's `cnf.jkt`), the signature, every claim against
the request it received, freshness, and that the `jti` is new. So a proof is
good for one request only: another tool, other arguments, another task,
another warrant, later, or again, and it fails.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ztgate.errors import InvalidInputError
from ztgate.warrants.jwk import b64url, key_thumbprint, load_public_jwk, public_jwk, thumbprint

TYP = "ztgate-proof+jwt"
# Asymmetric only: never none, never HMAC (the key is the agent's SVID key).
ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}
)
MAX_PROOF_CHARS = 8 * 1024
DEFAULT_WINDOW = 30.0
OPERATIONS = frozenset({"claim", "delegate", "renew"})
_JTI = re.compile(r"[\x21-\x7e]{16,128}")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
# Three base64url segments: what splitting on "." and matching each with `_SEGMENT` accepts.
_COMPACT = re.compile(r"\.".join([_SEGMENT.pattern] * 3))
_URLSAFE = bytes.maketrans(b"-_", b"+/")


class ProofError(InvalidInputError):
    """A proof that does not verify (the message says why)."""


@dataclass(frozen=True, slots=True)
class Proof:
    """A proof whose signature verified, and what it claims."""

    jkt: str
    jti: str
    issued_at: float
    claims: Mapping[str, Any]


def _b64decode(segment: str) -> bytes:
    """`base64.urlsafe_b64decode` of an unpadded segment, without its wrappers' cost."""
    data = segment.encode("ascii").translate(_URLSAFE) + b"=" * (-len(segment) % 4)
    return binascii.a2b_base64(data)


def arguments_hash(canonical: bytes) -> str:
    """The `args` claim for canonical JSON bytes."""
    return b64url(hashlib.sha256(canonical).digest())


def algorithm_for(key: Any) -> str:
    """The JWS algorithm the SDK signs with for `key`."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "PS256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise InvalidInputError(f"unsupported key type {type(key).__name__}")


def sign(
    private_key: Any,
    *,
    audience: str,
    task_id: str,
    warrant: str,
    canonical: bytes,
    tool: str | None = None,
    op: str | None = None,
    issued_at: float,
    jti: str | None = None,
    jwk: Mapping[str, str] | None = None,
) -> str:
    """Sign a proof for one request (a `tool` call, or a gateway `op`).

    `canonical` is the RFC 8785 form of the arguments (or the operation's
    body). `jwk` may be passed in to skip recomputing the public JWK.
    """
    if (tool is None) == (op is None):
        raise InvalidInputError("a proof is for exactly one tool or one operation")
    claims: dict[str, Any] = {
        "aud": audience,
        "iat": int(issued_at),
        "jti": jti or secrets.token_urlsafe(18),
        "task": task_id,
        "ath": b64url(hashlib.sha256(warrant.encode("ascii")).digest()),
        "args": arguments_hash(canonical),
    }
    if tool is not None:
        claims["tool"] = tool
    else:
        claims["op"] = op
    headers = {"typ": TYP, "jwk": dict(jwk or public_jwk(private_key))}
    return jwt.encode(claims, private_key, algorithm=algorithm_for(private_key), headers=headers)


class ProofVerifier:
    """Verifies proofs' signatures.

    PyJWT signs proofs (in the SDK) and its algorithm objects check every
    signature here, but parsing is done here: `jwt.decode` costs about
    0.15 ms per proof on top of the signature itself, paid on every call.
    A proof's header is the same for every call an agent makes with one key,
    so the checked header (algorithm, key, thumbprint) is cached by its
    encoded form; the signature is checked on every proof.
    """

    def __init__(self, *, cache_size: int = 4096) -> None:
        """Build a verifier that remembers up to `cache_size` distinct headers."""
        self._headers: dict[str, tuple[Any, Any, str]] = {}
        self._cache_size = cache_size
        self._algorithms = jwt.algorithms.get_default_algorithms()

    def verify(self, proof: str, *, jkt: str) -> Proof:
        """Verify `proof`'s signature with its `jwk`, which must be the key `jkt` names.

        Raises:
            ProofError: malformed, another key, a bad signature, or missing claims.
        """
        if not isinstance(proof, str) or len(proof) > MAX_PROOF_CHARS:
            raise ProofError(f"a proof is a JWS of at most {MAX_PROOF_CHARS} characters")
        if _COMPACT.fullmatch(proof) is None:
            raise ProofError("not a compact JWS (three base64url segments)")
        header_b64, payload_b64, signature_b64 = proof.split(".")
        checked = self._headers.get(header_b64)
        if checked is None:
            checked = self._check_header(header_b64)
            if len(self._headers) >= self._cache_size:
                self._headers.clear()
            self._headers[header_b64] = checked
        algorithm, key, presented = checked
        if presented != jkt:
            raise ProofError("signed by a key the warrant is not bound to")
        signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
        try:
            valid = algorithm.verify(signing_input, key, _b64decode(signature_b64))
        except Exception as exc:  # a malformed signature for the key type
            raise ProofError(f"signature: {type(exc).__name__}") from exc
        if not valid:
            raise ProofError("signature does not verify")
        try:
            claims = orjson.loads(_b64decode(payload_b64))
        except ValueError as exc:
            raise ProofError("the payload is not JSON") from exc
        if not isinstance(claims, dict):
            raise ProofError("the payload is not a JSON object")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not _JTI.fullmatch(jti):
            raise ProofError("jti must be 16-128 printable ASCII characters")
        issued_at = claims.get("iat")
        if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
            raise ProofError("iat is missing or not a number")
        return Proof(presented, jti, float(issued_at), claims)

    def _check_header(self, header_b64: str) -> tuple[Any, Any, str]:
        try:
            header = orjson.loads(_b64decode(header_b64))
        except ValueError as exc:
            raise ProofError("the header is not JSON") from exc
        if not isinstance(header, dict):
            raise ProofError("the header is not a JSON object")
        if header.get("typ") != TYP:
            raise ProofError(f"not a proof (typ must be {TYP!r})")
        if "crit" in header:
            raise ProofError("critical header extensions are not understood")
        name = header.get("alg")
        if name not in ALGORITHMS:
            raise ProofError(f"algorithm {str(name)[:20]!r} is not allowed")
        jwk = header.get("jwk")
        if not isinstance(jwk, Mapping):
            raise ProofError("the header carries no jwk")
        try:
            presented = thumbprint(jwk)
            key = load_public_jwk(jwk)
            algorithm = self._algorithms[str(name)]
            prepared = algorithm.prepare_key(key)
        except InvalidInputError as exc:
            raise ProofError(f"jwk: {exc.message}") from exc
        except Exception as exc:  # PyJWT refuses a key that does not fit the algorithm
            raise ProofError(f"jwk does not fit {name}: {type(exc).__name__}") from exc
        return algorithm, prepared, presented


def expect(
    proof: Proof,
    *,
    audience: str,
    task_id: str,
    ath: str,
    canonical: bytes,
    now: float,
    window: float,
    tool: str | None = None,
    op: str | None = None,
) -> None:
    """Check a verified proof's claims against the request it came with.

    Raises:
        ProofError: the first claim that does not match, named.
    """
    claims = proof.claims
    if abs(now - proof.issued_at) > window:
        raise ProofError(f"iat is outside the +-{window:g} s window")
    if claims.get("aud") != audience:
        raise ProofError("aud is not this gateway")
    if claims.get("task") != task_id:
        raise ProofError("made for another task")
    if claims.get("ath") != ath:
        raise ProofError("made for another warrant (ath)")
    if tool is not None and (claims.get("tool") != tool or "op" in claims):
        raise ProofError("made for another tool")
    if op is not None and (claims.get("op") != op or "tool" in claims):
        raise ProofError(f"not made for the {op!r} operation")
    if claims.get("args") != arguments_hash(canonical):
        raise ProofError("made for other arguments (args hash differs)")


__all__ = [
    "ALGORITHMS",
    "TYP",
    "Proof",
    "ProofError",
    "ProofVerifier",
    "arguments_hash",
    "expect",
    "key_thumbprint",
    "sign",
]
