"""SPIFFE IDs and trust domains, parsed strictly at the edge.

py-spiffe's parser does the SPIFFE ID spec's checks (scheme, trust domain
characters, path segments); on top of it, ztgate accepts only the canonical
spelling, so that two different strings can never name the same identity.
"""

from __future__ import annotations

import re

from spiffe import SpiffeId, TrustDomain
from spiffe.errors import PySpiffeError

from ztgate.errors import InvalidInputError

MAX_LENGTH = 2048  # SPIFFE ID spec, section 2.3: URIs longer than this are not guaranteed to work
# The SPIFFE ID grammar (sections 2.1, 2.2), as a whitelist checked with
# fullmatch (so no trailing newline slips past a `$`).
_GRAMMAR = re.compile(r"spiffe://[a-z0-9._-]{1,255}(?:/[A-Za-z0-9._-]+)*")
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")


def parse_spiffe_id(text: str) -> SpiffeId:
    """Parse a SPIFFE ID, refusing anything but its canonical form.

    Raises:
        InvalidInputError: not a valid, canonical SPIFFE ID.
    """
    if not isinstance(text, str) or len(text) > MAX_LENGTH:
        raise InvalidInputError("a SPIFFE ID must be a string of at most 2048 characters")
    try:
        parsed = SpiffeId(text)
    except (PySpiffeError, ValueError) as exc:
        raise InvalidInputError(f"invalid SPIFFE ID {text[:80]!r}: {exc}") from exc
    if str(parsed) != text:
        raise InvalidInputError(f"SPIFFE ID {text!r} is not in canonical form ({parsed})")
    if not _GRAMMAR.fullmatch(text):
        raise InvalidInputError(
            f"invalid SPIFFE ID {text[:80]!r}: spiffe://<trust domain>[/<path>] with lower-case "
            "trust domain characters [a-z0-9._-] and path characters [A-Za-z0-9._-]"
        )
    return parsed


def parse_trust_domain(text: str) -> TrustDomain:
    """Parse a trust domain name (`acme.example`) or its ID (`spiffe://acme.example`).

    Raises:
        InvalidInputError: not a valid, lower-case trust domain name.
    """
    if not isinstance(text, str):
        raise InvalidInputError("a trust domain must be a string")
    name = text.removeprefix("spiffe://")
    if not _TRUST_DOMAIN.fullmatch(name):
        raise InvalidInputError(
            f"invalid trust domain {text!r}: use lower-case letters, digits, '.', '-', '_'"
        )
    try:
        domain = TrustDomain(name)
    except (PySpiffeError, ValueError) as exc:
        raise InvalidInputError(f"invalid trust domain {text!r}: {exc}") from exc
    if domain.name != name:
        raise InvalidInputError(f"trust domain {text!r} is not in canonical form")
    return domain


def trust_domain_id(domain: TrustDomain) -> str:
    """The trust domain's own SPIFFE ID, `spiffe://<name>`."""
    return f"spiffe://{domain.name}"
