"""The agent's identity: its X.509-SVID (rotating) and JWT-SVIDs, from the SPIFFE Workload API.

`WorkloadIdentity` keeps an `X509Source` (py-spiffe) streaming from the
Workload API: every push of a new SVID — before the current one is half way
through its life, and at once after a CA or registration change — replaces
the `SvidKey` the agent signs with, whose thumbprint then no longer matches
the warrant's, so the agent binds again before its next call. JWT-SVIDs for
the gateway's audience are fetched on demand and kept until half their
lifetime has passed. Nothing blocks without a deadline.

Any object with the `IdentityProvider` methods can stand in (tests, an
SVID read from files).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from cryptography import x509
from spiffe import SpiffeId, WorkloadApiClient, X509Source, X509Svid
from spiffe.errors import PySpiffeError

from ztgate.sdk.errors import IdentityError
from ztgate.sdk.models import SvidKey

log = logging.getLogger(__name__)

DEFAULT_AUDIENCE = "ztgate"


class IdentityProvider(Protocol):
    """Where an agent's SVIDs come from."""

    def svid(self) -> SvidKey:
        """The X.509-SVID to sign with now (no I/O).

        Raises:
            IdentityError: none is usable.
        """

    def jwt_svid(self) -> str:
        """A JWT-SVID for the gateway's audience, fetched if the cached one is due (bounded).

        Raises:
            IdentityError: none could be had.
        """

    def cached_jwt_svid(self) -> str | None:
        """The cached JWT-SVID if it is not due for renewal, else None (no I/O)."""

    def trust_roots(self) -> list[x509.Certificate]:
        """The trust domain's X.509 roots, to verify the gateway's certificate."""

    def close(self) -> None:
        """Stop watching for new SVIDs."""


def socket_uri(path: str) -> str:
    """A Workload API address as py-spiffe wants it (`unix:///abs/path`)."""
    return path if "://" in path else f"unix://{path}"


def _picker(spiffe_id: str) -> Callable[[list[X509Svid]], X509Svid]:
    def pick(svids: list[X509Svid]) -> X509Svid:
        for svid in svids:
            if str(svid.spiffe_id) == spiffe_id:
                return svid
        raise IdentityError(f"the Workload API sent no X.509-SVID for {spiffe_id}")

    return pick


class WorkloadIdentity:
    """SVIDs from the SPIFFE Workload API, kept current."""

    def __init__(
        self,
        socket_path: str | None = None,
        *,
        audience: str = DEFAULT_AUDIENCE,
        spiffe_id: str | None = None,
        timeout: float = 10.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        """Connect and wait (at most `timeout` seconds) for the first X.509-SVID.

        `socket_path` is a path or a `unix://` URI; None reads SPIFFE_ENDPOINT_SOCKET.
        `spiffe_id` picks one identity when the workload is registered under
        several (default: the first the Workload API sends).

        Raises:
            IdentityError: no socket, or no SVID within `timeout` (e.g. not registered).
        """
        self.audience = audience
        self._timeout = timeout
        self._now = now
        self._lock = threading.Lock()
        self._jwt_lock = threading.Lock()
        self._jwt: tuple[str, float, float] | None = None  # token, renew at, expires at
        self._svid: SvidKey | None = None
        self._roots: list[x509.Certificate] = []
        try:
            self._client = WorkloadApiClient(
                socket_uri(socket_path) if socket_path else None, default_timeout=timeout
            )
        except PySpiffeError as exc:
            raise IdentityError(f"the Workload API: {exc}") from exc
        try:
            self._source = X509Source(
                workload_api_client=self._client,
                timeout_in_seconds=timeout,
                svid_picker=None if spiffe_id is None else _picker(spiffe_id),
            )
        except PySpiffeError as exc:
            self._client.close()
            raise IdentityError(
                f"no X.509-SVID from the Workload API within {timeout:g} s "
                f"(is this process registered?): {exc}"
            ) from exc
        self._source.subscribe_for_updates(self._update)
        self._update()

    def _update(self) -> None:
        try:
            context = self._source.get_x509_context()
        except PySpiffeError as exc:  # closed or failed: svid() reports it
            log.warning("X.509 source: %s", exc)
            return
        current = context.default_svid
        key = SvidKey.from_chain(str(current.spiffe_id), current.private_key, current.cert_chain)
        bundle = context.x509_bundle_set.get_bundle_for_trust_domain(current.spiffe_id.trust_domain)
        with self._lock:
            if self._svid is None or self._svid.serial != key.serial:
                self._svid = key
            if bundle is not None:
                self._roots = list(bundle.x509_authorities)

    @property
    def spiffe_id(self) -> str:
        """The agent's SPIFFE ID."""
        return self.svid().spiffe_id

    def svid(self) -> SvidKey:
        """The newest X.509-SVID the Workload API pushed (see `IdentityProvider.svid`)."""
        with self._lock:
            current = self._svid
        if current is None or self._source.is_closed():
            raise IdentityError("the X.509-SVID source is closed")
        if self._now() >= current.not_after:
            raise IdentityError("the X.509-SVID expired and the Workload API sent no new one")
        return current

    def cached_jwt_svid(self) -> str | None:
        """See `IdentityProvider.cached_jwt_svid`."""
        cached = self._jwt
        if cached is not None and self._now() < cached[1]:
            return cached[0]
        return None

    def jwt_svid(self) -> str:
        """See `IdentityProvider.jwt_svid`: renewed once half its lifetime has passed.

        A failed renewal keeps the current token while it has not expired.
        """
        with self._jwt_lock:
            token = self.cached_jwt_svid()
            if token is not None:
                return token
            subject = SpiffeId(self.svid().spiffe_id)
            fetched_at = self._now()
            try:
                svid = self._client.fetch_jwt_svid(
                    audience={self.audience}, subject=subject, timeout=self._timeout
                )
            except PySpiffeError as exc:
                old = self._jwt
                if old is not None and fetched_at < old[2]:
                    log.warning("JWT-SVID renewal failed, using the current one: %s", exc)
                    return old[0]
                raise IdentityError(f"no JWT-SVID from the Workload API: {exc}") from exc
            expires_at = float(svid.expiry)
            self._jwt = (svid.token, fetched_at + (expires_at - fetched_at) / 2, expires_at)
            return svid.token

    def trust_roots(self) -> list[x509.Certificate]:
        """See `IdentityProvider.trust_roots`."""
        with self._lock:
            return list(self._roots)

    def close(self) -> None:
        """Close the X.509 source and the Workload API connection."""
        self._source.unsubscribe_for_updates(self._update)
        self._source.close()
        self._client.close()

    def __enter__(self) -> WorkloadIdentity:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()
