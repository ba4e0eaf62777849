"""Session-bound signatures on approvers' decisions (issue 7, item 3).

At login the console's login page makes a non-extractable ECDSA P-256 key
pair in the browser (WebCrypto) and sends its public JWK; the session
records it and its RFC 7638 thumbprint. Each approve or reject is signed in
the browser, with that key, over a canonical statement naming the request
exactly as the approver was shown it; the server verifies the signature
before it decides, and the audit record of the decision carries the
statement, the signature and the key's thumbprint.

The statement is the RFC 8785 canonical JSON of

    {"approval": id, "comment": text, "decision": "approve" | "reject",
     "request_sha256": hex, "session": session id, "type": STATEMENT_TYPE}

(all strings, so the browser's `JSON.stringify` over sorted keys produces
the very same bytes). The signature is WebCrypto's: the 64-byte IEEE P1363
`r || s`, base64url without padding.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ztgate.canonical import canonical_json
from ztgate.errors import GatewayError, InvalidInputError
from ztgate.warrants.jwk import load_public_jwk, public_jwk, thumbprint

STATEMENT_TYPE = "ztgate-console-decision/1"
DECISIONS = ("approve", "reject")
MAX_JWK_CHARS = 1024
_P256_SIGNATURE_BYTES = 64
_B64URL = re.compile(r"[A-Za-z0-9_-]{86}")  # 64 bytes, unpadded


class SignatureError(GatewayError):
    """A decision's signature is missing, malformed, or does not verify."""


def statement(
    *, approval_id: str, decision: str, comment: str, request_sha256: str, session_id: str
) -> bytes:
    """The bytes an approver's browser signs for one decision.

    Raises:
        InvalidInputError: an unknown decision.
    """
    if decision not in DECISIONS:
        raise InvalidInputError(f"a decision is {' or '.join(DECISIONS)}")
    return canonical_json(
        {
            "approval": approval_id,
            "comment": comment,
            "decision": decision,
            "request_sha256": request_sha256,
            "session": session_id,
            "type": STATEMENT_TYPE,
        }
    )


def session_key(text: str) -> tuple[dict[str, str], str]:
    """The public P-256 JWK a login form sent (required members only) and its thumbprint.

    Raises:
        InvalidInputError: not JSON, not a public EC P-256 key, or too long.
    """
    if not isinstance(text, str) or not text or len(text) > MAX_JWK_CHARS:
        raise InvalidInputError("the browser sent no usable session key")
    try:
        jwk: Any = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError("the session key is not JSON") from exc
    if not isinstance(jwk, Mapping) or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise InvalidInputError("the session key is not an EC P-256 public key")
    key = load_public_jwk(jwk)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidInputError("the session key is not an EC P-256 public key")
    members = public_jwk(key)
    return members, thumbprint(members)


def verify(jwk: Mapping[str, Any], signed: bytes, signature: str) -> None:
    """Check `signature` (base64url P1363 r||s) over `signed` with the session's key.

    Steps:
      (1) the signature decodes to exactly 64 bytes;
      (2) the session key loads as a public EC P-256 key;
      (3) ECDSA with SHA-256 verifies over the statement's bytes.

    Raises:
        SignatureError: any step fails.
    """
    # (1): base64url, unpadded, 64 bytes.
    if not isinstance(signature, str) or not _B64URL.fullmatch(signature):
        raise SignatureError("the decision's signature is not base64url")
    try:
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except (binascii.Error, ValueError, TypeError) as exc:
        raise SignatureError("the decision's signature is not base64url") from exc
    if len(raw) != _P256_SIGNATURE_BYTES:
        raise SignatureError("the decision's signature is not an ECDSA P-256 signature")
    # (2): the key the session was made with.
    try:
        key = load_public_jwk(jwk)
    except InvalidInputError as exc:
        raise SignatureError(f"the session key is unusable: {exc.message}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SignatureError("the session key is not an EC P-256 key")
    # (3): WebCrypto's r || s, as DER for cryptography.
    r = int.from_bytes(raw[:32], "big")
    s = int.from_bytes(raw[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SignatureError(
            "the decision's signature does not verify with this session's key"
        ) from exc


def p1363_signature(key: ec.EllipticCurvePrivateKey, signed: bytes) -> str:
    """What a browser sends: a P1363 signature over `signed`, base64url (tests and tools)."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(key.sign(signed, ec.ECDSA(hashes.SHA256())))
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
