"""Reading an agent's credentials from an HTTP request: bearer token, mTLS chain, warrant, proof."""

from __future__ import annotations

import re

from starlette.types import Scope

from ztgate.http.problems import Problem
from ztgate.http.tls import client_chain_der
from ztgate.models import Credentials

CHALLENGE = 'Bearer realm="ztgate"'
_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*")


def read_client_chain(scope: Scope) -> bytes | None:
    """The mTLS client's certificate chain (concatenated DER, leaf first), if it sent one.

    Read from the ASGI TLS extension the front door's protocol adds (`ztgate.http.tls`).

    Raises:
        Problem: 401, the chain in the scope is not PEM certificates.
    """
    try:
        return client_chain_der(scope)
    except (ValueError, TypeError) as exc:
        raise Problem(
            401,
            "unauthenticated",
            "the client certificate cannot be read",
            headers={"WWW-Authenticate": CHALLENGE + ', error="invalid_request"'},
        ) from exc


def read_credentials(
    authorization: str | None,
    client_certificate: bytes | None = None,
    *,
    warrant: str | None = None,
    proof: str | None = None,
) -> Credentials:
    """The credentials of an `Authorization` header (`Bearer <JWT-SVID>`), an mTLS chain,
    and the `Ztgate-Warrant` and `Ztgate-Proof` headers (checked by the pipeline).

    Raises:
        Problem: 401, the header is not a bearer token.
    """
    if authorization is None:
        return Credentials(client_certificate=client_certificate, warrant=warrant, proof=proof)
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN68.fullmatch(token):
        raise Problem(
            401,
            "unauthenticated",
            "malformed Authorization header: expected 'Bearer <JWT-SVID>'",
            headers={"WWW-Authenticate": CHALLENGE + ', error="invalid_request"'},
        )
    return Credentials(
        bearer=token, client_certificate=client_certificate, warrant=warrant, proof=proof
    )
