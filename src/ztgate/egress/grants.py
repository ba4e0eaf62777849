"""Who may use the egress proxy: one grant per enclave, and its proxy credentials.

A grant ties an attribution (the enclave, its agent and task) to its egress
rules, under an id unique to one running enclave. On the enclave's own Unix
socket a connection is that enclave's; on TCP it must carry
`Proxy-Authorization: Basic` with the grant id and its random password,
compared in constant time. Passwords live in memory
only and are never logged or audited.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from ztgate.egress.decision import Attribution, EgressRules

# Compared against when the user is unknown, so that the time taken does not say so.
_DUMMY = secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Grant:
    """An enclave's attribution and where its connections may go, under a unique id."""

    id: str  # unique among the proxy's grants; the proxy user name
    attribution: Attribution
    rules: EgressRules


@dataclass(frozen=True, slots=True)
class ProxyCredentials:
    """The user and password an enclave's client sends to the proxy's TCP listener."""

    user: str
    password: str

    def __repr__(self) -> str:
        return f"ProxyCredentials(user={self.user!r}, password='***')"


class Grants:
    """The enclaves the proxy serves, by grant id."""

    def __init__(self) -> None:
        self._grants: dict[str, tuple[Grant, str]] = {}

    def add(self, grant: Grant) -> ProxyCredentials:
        """Serve `grant` (replacing one with the same id) with a new random password."""
        password = secrets.token_urlsafe(32)
        self._grants[grant.id] = (grant, password)
        return ProxyCredentials(grant.id, password)

    def remove(self, grant_id: str) -> None:
        """Stop serving the grant `grant_id` (no error if it is not served)."""
        self._grants.pop(grant_id, None)

    def get(self, grant_id: str) -> Grant | None:
        """The grant `grant_id`, if it is served."""
        found = self._grants.get(grant_id)
        return None if found is None else found[0]

    def authenticate(self, credentials: tuple[str, str] | None) -> Grant | None:
        """The grant whose user and password these are, or None."""
        if credentials is None:
            return None
        user, password = credentials
        found = self._grants.get(user)
        expected = _DUMMY if found is None else found[1]
        match = hmac.compare_digest(password.encode(), expected.encode())
        return found[0] if match and found is not None else None
