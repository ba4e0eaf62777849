"""Federation: other trust domains' SPIFFE bundles, from files or from their bundle endpoints.

The consuming side of the SPIFFE Federation spec. Each `[[identity.federation]]`
entry is a `Peer`: a trust domain and where its bundle comes from:

- a file (`bundle_file`), read at start and again whenever it changes;
- a SPIFFE bundle endpoint (`bundle_endpoint_url`, https only), with one of
  the spec's two endpoint profiles:
  - `https_web`: ordinary Web PKI server authentication (the system's CAs, or
    the CAs of `ca_file` for a private CA), hostname checked;
  - `https_spiffe`: the server must present an X.509-SVID for exactly
    `endpoint_spiffe_id`, chaining to the *current* bundle of that ID's trust
    domain: for a self-serving endpoint (the usual case) the peer's own
    bundle, bootstrapped from `bundle_file` and then each fetched one; else
    the local trust domain's, or another federated domain's.

`fetch_bundle` GETs an endpoint: TLS as above (for https_spiffe, the
server's SPIFFE ID is checked once the handshake is done, before the answer
is read or a redirect followed; the request itself carries nothing), at most
`MAX_REDIRECTS` redirects (each to a valid https URL, authenticated the same
way), a `FETCH_TIMEOUT` deadline for the whole fetch, a `MAX_BUNDLE_BYTES`
limit, and the document parsed by `read_bundle` for the configured trust
domain (so a malformed bundle, or one whose roots name another trust domain,
is refused).

`Federation` keeps every peer's current bundle:

- `bundles()` is on the call path: it stats the bundle files and the state
  files (below) and returns the same mapping object until one of them changes.
  No network there.
- `run()` is the gateway's background task: it fetches each endpoint when its
  bundle's `spiffe_refresh_hint` says (bounded to [`MIN_REFRESH`,
  `MAX_REFRESH`], `DEFAULT_REFRESH` when absent, as the spec recommends).
- It fails closed and safe. A failed fetch keeps the last good bundle and logs
  a warning; it is retried after `MIN_REFRESH` seconds, doubling up to the
  refresh interval (never aggressively). A malformed or wrong-domain bundle
  never replaces a good one. A domain whose bundle was never obtained has no
  keys, and its SVIDs are refused saying so.
- The last good fetched bundle and the status of the last attempt are kept in
  a state file, `<data_dir>/federation/<trust domain>.json` (mode 0600,
  replaced atomically): a restart trusts the peer while it is down, `ztgate
  federation list` shows the status, and a bundle fetched by `ztgate federation
  refresh` (another process) is picked up by a running gateway on its next
  call. The most recently fetched bundle is the current one (spec, section
  4.2); its `spiffe_sequence` is recorded and shown, not enforced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import ssl
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509

from ztgate.clock import Clock
from ztgate.errors import ConfigError, GatewayError, InvalidInputError
from ztgate.identity import _hazmat
from ztgate.identity.bundle import JWT_USE, X509_USE, SpiffeBundle, read_bundle
from ztgate.identity.spiffe_id import parse_spiffe_id, parse_trust_domain
from ztgate.identity.verify import TrustBundle

if TYPE_CHECKING:
    from ztgate.config import Settings
    from ztgate.metrics import Metrics

logger = logging.getLogger(__name__)

HTTPS_WEB = "https_web"
HTTPS_SPIFFE = "https_spiffe"
FILE = "file"
STATE_DIR = "federation"
MIN_REFRESH = 30.0
MAX_REFRESH = 86400.0
DEFAULT_REFRESH = 300.0
MAX_BUNDLE_BYTES = 1 << 20
FETCH_TIMEOUT = 10.0
MAX_REDIRECTS = 3
MAX_WAIT = 60.0  # the background task looks again at least this often
NEVER_OBTAINED = "its bundle has not been obtained yet"

Stamp = tuple[int, int, int]


class FederationError(GatewayError):
    """A federated bundle could not be fetched or read."""


@dataclass(frozen=True, slots=True)
class Peer:
    """One federation relationship's endpoint parameters."""

    trust_domain: str
    bundle_file: Path | None = None
    endpoint_url: str | None = None
    profile: str = HTTPS_WEB
    endpoint_spiffe_id: str | None = None
    ca_file: Path | None = None

    @property
    def kind(self) -> str:
        """The source: file, https_web or https_spiffe."""
        return FILE if self.endpoint_url is None else self.profile

    @property
    def endpoint_trust_domain(self) -> str | None:
        """The trust domain of the endpoint server's SPIFFE ID (https_spiffe)."""
        if self.endpoint_spiffe_id is None:
            return None
        return parse_spiffe_id(self.endpoint_spiffe_id).trust_domain.name

    @property
    def location(self) -> str:
        """Where the bundle comes from: the URL, else the file."""
        return self.endpoint_url or str(self.bundle_file)


def peers_from_settings(settings: Settings) -> list[Peer]:
    """The `[[identity.federation]]` entries, with paths resolved."""
    return [
        Peer(
            trust_domain=entry.trust_domain,
            bundle_file=settings.path(entry.bundle_file) if entry.bundle_file else None,
            endpoint_url=entry.bundle_endpoint_url,
            profile=entry.endpoint_profile,
            endpoint_spiffe_id=entry.endpoint_spiffe_id,
            ca_file=settings.path(entry.ca_file) if entry.ca_file else None,
        )
        for entry in settings.identity.federation
    ]


def state_dir(settings: Settings) -> Path:
    """Where the fetched bundles and fetch status are kept."""
    return settings.path(settings.data_dir) / STATE_DIR


def refresh_interval(
    hint: int | None,
    *,
    minimum: float = MIN_REFRESH,
    maximum: float = MAX_REFRESH,
    default: float = DEFAULT_REFRESH,
) -> float:
    """Seconds until the next fetch: the bundle's refresh hint, bounded."""
    chosen = default if hint is None else float(hint)
    return min(max(chosen, minimum), maximum)


# -- fetching one bundle ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fetched:
    """A bundle fetched from an endpoint, and the document it was read from."""

    bundle: SpiffeBundle
    document: dict[str, Any]
    url: str


async def fetch_bundle(
    peer: Peer,
    roots: Sequence[x509.Certificate] = (),
    *,
    timeout: float = FETCH_TIMEOUT,
    max_bytes: int = MAX_BUNDLE_BYTES,
) -> Fetched:
    """GET `peer`'s bundle endpoint and read the bundle for its trust domain.

    `roots` (https_spiffe only) are the X.509 roots the endpoint's SVID must
    chain to: the current bundle of its SPIFFE ID's trust domain.

    Raises:
        FederationError: the endpoint could not be reached or authenticated,
            answered anything but a bundle within the limits, or the bundle is
            malformed or not of the peer's trust domain.
    """
    if peer.endpoint_url is None:
        raise FederationError(f"{peer.trust_domain} has no bundle endpoint")
    context = _client_context(peer, roots)
    try:
        return await asyncio.wait_for(_fetch(peer, context, timeout, max_bytes), timeout)
    except TimeoutError as exc:
        raise FederationError(f"no answer within {timeout:g} s") from exc
    except httpx.HTTPError as exc:
        raise FederationError(_describe(exc)) from exc
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise FederationError(f"{type(exc).__name__}: {exc}") from exc


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLError | OSError) and str(cause) not in text:
        text = f"{text}: {cause}"
    return text[:500]


def _client_context(peer: Peer, roots: Sequence[x509.Certificate]) -> ssl.SSLContext:
    if peer.profile == HTTPS_SPIFFE:
        if not roots:
            domain = peer.endpoint_trust_domain
            raise FederationError(
                f"no X.509 root of {domain} to authenticate the bundle endpoint "
                f"{peer.endpoint_spiffe_id} with"
            )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False  # the server is authenticated by its SPIFFE ID
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(
            cadata=b"".join(_hazmat.certificate_pem(r) for r in roots).decode()
        )
        return context
    try:
        if peer.ca_file is not None:
            return ssl.create_default_context(cafile=str(peer.ca_file))
        return ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise FederationError(f"cannot read the CA file {peer.ca_file}: {exc}") from exc


async def _fetch(peer: Peer, context: ssl.SSLContext, timeout: float, max_bytes: int) -> Fetched:
    url = str(peer.endpoint_url)
    async with httpx.AsyncClient(
        verify=context,
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,  # neither proxies nor CA files from the environment
        headers={"Accept": "application/json"},
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            _check_url(url)
            async with client.stream("GET", url) as response:
                if peer.profile == HTTPS_SPIFFE:
                    _check_server_svid(response, str(peer.endpoint_spiffe_id))
                if response.is_redirect:
                    url = str(response.url.join(response.headers.get("location", "")))
                    continue
                if response.status_code != 200:
                    raise FederationError(
                        f"the bundle endpoint answered HTTP {response.status_code}"
                    )
                body = await _read_limited(response, max_bytes)
            return _read_document(peer.trust_domain, body, url)
    raise FederationError(f"more than {MAX_REDIRECTS} redirects")


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise FederationError(f"not an https URL: {url[:200]}")
    if parts.username is not None or parts.password is not None:
        raise FederationError("a bundle endpoint URL must not carry user information")


def _check_server_svid(response: httpx.Response, expected: str) -> None:
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise FederationError("the bundle endpoint presented no certificate")
    try:
        leaf = x509.load_der_x509_certificate(der)
        extensions = leaf.extensions
    except (x509.DuplicateExtension, ValueError) as exc:
        raise FederationError(f"the bundle endpoint's certificate is malformed: {exc}") from exc
    try:
        names = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    try:
        is_ca = extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if len(uris) != 1 or is_ca:
        raise FederationError("the bundle endpoint's certificate is not an X.509-SVID")
    if uris[0] != expected:
        raise FederationError(f"the bundle endpoint is {uris[0]}, not {expected}")


async def _read_limited(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FederationError(f"the bundle is larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise FederationError(f"the bundle is larger than {max_bytes} bytes")
    return bytes(body)


def _read_document(trust_domain: str, body: bytes, url: str) -> Fetched:
    try:
        text = body.decode("utf-8")
        document = json.loads(text)
        bundle = read_bundle(trust_domain, text, allow_empty=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FederationError(f"not a SPIFFE bundle: {exc}") from exc
    except InvalidInputError as exc:
        raise FederationError(exc.message) from exc
    return Fetched(bundle, document, url)


# -- every peer's current bundle --------------------------------------------------------


@dataclass
class PeerState:
    """A peer's current bundle and the status of its last refresh."""

    peer: Peer
    bundle: TrustBundle | None = None
    document: dict[str, Any] | None = None  # the fetched document (endpoints only)
    origin: str = ""  # file | bootstrap | endpoint (fetched, by this or another process)
    sequence: int | None = None
    refresh_hint: int | None = None
    refreshed_at: float | None = None  # read (file) or last fetched successfully (endpoint)
    attempted_at: float | None = None
    next_refresh: float | None = None
    last_error: str | None = None
    failures: int = 0
    file_stamp: Stamp | None = None
    state_stamp: Stamp | None = None

    def status(self) -> dict[str, Any]:
        """What `ztgate federation list` shows."""
        bundle = self.bundle
        return {
            "trust_domain": self.peer.trust_domain,
            "source": self.peer.kind,
            "location": self.peer.location,
            "endpoint_spiffe_id": self.peer.endpoint_spiffe_id,
            "bundle_from": self.origin or None,
            "x509_roots": len(bundle.x509_roots) if bundle else 0,
            "jwt_keys": len(bundle.jwt_keys) if bundle else 0,
            "sequence": self.sequence,
            "refresh_hint": self.refresh_hint,
            "refreshed_at": self.refreshed_at,
            "attempted_at": self.attempted_at,
            "next_refresh": self.next_refresh,
            "last_error": self.last_error,
            "failures": self.failures,
        }


class Federation:
    """The federated trust domains' current bundles, refreshed in the background."""

    def __init__(
        self,
        peers: Sequence[Peer],
        clock: Clock,
        *,
        state_dir: Path | None = None,
        local_trust_domain: str | None = None,
        local_roots: Callable[[], Sequence[x509.Certificate]] = lambda: (),
        strict: bool = True,
        min_refresh: float = MIN_REFRESH,
        max_refresh: float = MAX_REFRESH,
        default_refresh: float = DEFAULT_REFRESH,
        timeout: float = FETCH_TIMEOUT,
        max_bytes: int = MAX_BUNDLE_BYTES,
    ) -> None:
        """Read every bundle file, and the last bundle fetched from each endpoint.

        Raises:
            ConfigError: (`strict` only) a bundle file is missing or unusable,
                or a peer names the local trust domain.
        """
        self._clock = clock
        self._state_dir = state_dir
        self.local_trust_domain = local_trust_domain
        self.local_roots = local_roots
        self.metrics: Metrics | None = None
        self._bounds = {"minimum": min_refresh, "maximum": max_refresh, "default": default_refresh}
        self._min_refresh = min_refresh
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._states: dict[str, PeerState] = {}
        for peer in peers:
            domain = parse_trust_domain(peer.trust_domain).name
            if domain == local_trust_domain:
                raise ConfigError(peer.location, "", f"{domain} is the local trust domain")
            state = self._states[domain] = PeerState(peer)
            if peer.bundle_file is not None:
                self._read_file(state, strict=strict)
            if peer.endpoint_url is not None:
                self._read_state_file(state)
                if state.next_refresh is None:
                    state.next_refresh = clock.now()
        self._mapping: Mapping[str, TrustBundle] = MappingProxyType({})
        self._rebuild()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # -- the call path -------------------------------------------------------------------

    def bundles(self) -> Mapping[str, TrustBundle]:
        """Every federated domain's bundle; the same object until one changes.

        A domain whose bundle was never obtained maps to a bundle with no keys
        that says so. Costs one `stat` per bundle file and per endpoint.
        """
        changed = False
        for state in self._states.values():
            peer = state.peer
            if peer.bundle_file is not None and _stamp(peer.bundle_file) != state.file_stamp:
                changed |= self._read_file(state, strict=False)
            path = self._state_path(peer) if peer.endpoint_url is not None else None
            if path is not None and _stamp(path) != state.state_stamp:
                changed |= self._read_state_file(state)
        if changed:
            self._rebuild()
        return self._mapping

    def peers(self) -> list[Peer]:
        """The configured peers."""
        return [state.peer for state in self._states.values()]

    def status(self) -> list[dict[str, Any]]:
        """Each peer's bundle and refresh status (after picking up changed files)."""
        self.bundles()
        return [state.status() for state in self._states.values()]

    # -- refreshing ---------------------------------------------------------------------

    @property
    def has_endpoints(self) -> bool:
        """True if some peer's bundle comes from a bundle endpoint."""
        return any(s.peer.endpoint_url is not None for s in self._states.values())

    async def refresh(self, domains: Sequence[str] | None = None) -> dict[str, bool]:
        """Fetch now from the endpoints of `domains` (default: every endpoint).

        Bundle files are read again. Never raises for a failed fetch: the
        result maps each domain to whether it succeeded, and the error is in
        `status()`.
        """
        chosen = [s for d, s in self._states.items() if domains is None or d in domains]
        files = [s for s in chosen if s.peer.endpoint_url is None]
        endpoints = [s for s in chosen if s.peer.endpoint_url is not None]
        for state in files:
            self._read_file(state, strict=False)
        self.bundles()
        outcomes = await asyncio.gather(*(self._refresh(s) for s in endpoints))
        self._rebuild()
        results = {s.peer.trust_domain: s.last_error is None for s in files}
        results.update(zip((s.peer.trust_domain for s in endpoints), outcomes, strict=True))
        return results

    async def start(self, metrics: Metrics | None = None) -> None:
        """Start refreshing the bundle endpoints in the background (if there are any)."""
        self.metrics = metrics
        if metrics is not None:
            for domain, state in self._states.items():
                if state.bundle is not None:
                    self._gauge(domain, state.bundle)
        if self._task is None and self.has_endpoints:
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self.run(self._stop))

    async def stop(self) -> None:
        """Stop the background refresh (a fetch under way is abandoned)."""
        task, self._task = self._task, None
        if task is not None:
            self._stop.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh every endpoint when due, until `stop` is set."""
        endpoints = [s for s in self._states.values() if s.peer.endpoint_url is not None]
        if not endpoints:
            return
        while not stop.is_set():
            self.bundles()  # a fetch by another process moves the next refresh
            now = self._clock.now()
            due = [s for s in endpoints if (s.next_refresh or 0.0) <= now]
            if due:
                await asyncio.gather(*(self._refresh(s) for s in due))
                self._rebuild()
            wait = min((s.next_refresh or 0.0) for s in endpoints) - self._clock.now()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(max(wait, 0.01), MAX_WAIT))

    async def _refresh(self, state: PeerState) -> bool:
        peer = state.peer
        now = self._clock.now()
        state.attempted_at = now
        try:
            roots = self._endpoint_roots(peer) if peer.profile == HTTPS_SPIFFE else ()
            fetched = await fetch_bundle(
                peer, roots, timeout=self._timeout, max_bytes=self._max_bytes
            )
        except Exception as exc:  # a failed fetch must never take the gateway down
            message = exc.message if isinstance(exc, GatewayError) else repr(exc)
            state.failures += 1
            state.last_error = message[:500]
            retry = self._min_refresh * 2 ** min(state.failures - 1, 20)
            state.next_refresh = now + min(retry, self._interval(state.refresh_hint))
            kept = "keeping the last good bundle" if state.bundle else "no bundle yet"
            logger.warning(
                "federation: could not refresh the bundle of %s from %s: %s "
                "(%s; next try in %.0f s)",
                peer.trust_domain,
                peer.endpoint_url,
                state.last_error,
                kept,
                state.next_refresh - now,
            )
            self._count(peer.trust_domain, "error")
            self._save(state)
            return False
        if fetched.bundle.empty:
            logger.warning(
                "federation: the bundle endpoint of %s published no keys: none of its SVIDs "
                "is trusted now",
                peer.trust_domain,
            )
        if fetched.document != state.document:
            logger.info(
                "federation: new bundle of %s from %s (%d X.509 roots, %d JWT keys)",
                peer.trust_domain,
                fetched.url,
                len(fetched.bundle.bundle.x509_roots),
                len(fetched.bundle.bundle.jwt_keys),
            )
        self._adopt(state, fetched.bundle, fetched.document, "endpoint", now)
        state.attempted_at = now
        state.failures = 0
        state.last_error = None
        self._count(peer.trust_domain, "ok")
        self._save(state)
        return True

    def _endpoint_roots(self, peer: Peer) -> Sequence[x509.Certificate]:
        domain = peer.endpoint_trust_domain
        if domain == self.local_trust_domain:
            return self.local_roots()
        state = self._states.get(domain or "")
        if state is None:
            raise FederationError(f"the trust domain of {peer.endpoint_spiffe_id} is not known")
        return state.bundle.x509_roots if state.bundle is not None else ()

    def _interval(self, hint: int | None) -> float:
        return refresh_interval(hint, **self._bounds)

    def _adopt(
        self,
        state: PeerState,
        parsed: SpiffeBundle,
        document: dict[str, Any],
        origin: str,
        refreshed_at: float,
    ) -> None:
        if document != state.document or state.bundle is None:
            state.bundle = parsed.bundle  # else keep the object: the check's cache keys on it
        state.document = document
        state.origin = origin
        state.sequence = parsed.sequence
        state.refresh_hint = parsed.refresh_hint
        state.refreshed_at = refreshed_at
        state.next_refresh = refreshed_at + self._interval(parsed.refresh_hint)
        if self.metrics is not None:
            self._gauge(state.peer.trust_domain, parsed.bundle)
            if origin == "endpoint":
                self.metrics.federation_last_refresh.labels(state.peer.trust_domain).set(
                    refreshed_at
                )

    def _gauge(self, domain: str, bundle: TrustBundle) -> None:
        if self.metrics is not None:
            self.metrics.federation_keys.labels(domain, X509_USE).set(len(bundle.x509_roots))
            self.metrics.federation_keys.labels(domain, JWT_USE).set(len(bundle.jwt_keys))

    def _count(self, domain: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.federation_refreshes.labels(domain, result).inc()

    def _rebuild(self) -> None:
        bundles = {}
        for domain, state in self._states.items():
            if state.bundle is not None:
                bundles[domain] = state.bundle
            else:
                bundles[domain] = TrustBundle(domain, unavailable=NEVER_OBTAINED)
        if dict(self._mapping) != bundles:
            self._mapping = MappingProxyType(bundles)

    # -- files ----------------------------------------------------------------------------

    def _read_file(self, state: PeerState, *, strict: bool) -> bool:
        """Read the bundle file (or the bootstrap bundle); True if the bundle changed."""
        peer = state.peer
        path = peer.bundle_file
        assert path is not None  # noqa: S101 - only called for peers with a file
        stamp = _stamp(path)
        state.file_stamp = stamp
        try:
            parsed = read_bundle(peer.trust_domain, path.read_bytes())
        except (OSError, InvalidInputError) as exc:
            reason = (
                f"cannot read the bundle: {exc.strerror}"
                if isinstance(exc, OSError)
                else exc.message
            )
            if strict:
                raise ConfigError(str(path), "", reason) from exc
            if peer.endpoint_url is None:
                state.last_error = reason
            logger.warning(
                "federation: cannot use the bundle file of %s (%s): %s%s",
                peer.trust_domain,
                path,
                reason,
                "; keeping the last good bundle" if state.bundle is not None else "",
            )
            return False
        modified = stamp[0] / 1e9 if stamp is not None else self._clock.now()
        if peer.endpoint_url is None:
            state.last_error = None
            state.origin = FILE
            state.refreshed_at = modified
        else:
            # The bootstrap bundle, until a fetched one newer than it (an
            # operator may update it at any time: spec, section 4.2).
            if state.origin != "bootstrap" and (state.refreshed_at or 0.0) >= modified:
                return False
            state.origin = "bootstrap"
            state.document = None
        changed = parsed.bundle != state.bundle
        if changed:
            state.bundle = parsed.bundle
        state.sequence = parsed.sequence
        state.refresh_hint = parsed.refresh_hint
        return changed

    def _state_path(self, peer: Peer) -> Path | None:
        if self._state_dir is None:
            return None
        return self._state_dir / f"{peer.trust_domain}.json"

    def _read_state_file(self, state: PeerState) -> bool:
        """Pick up the state file (written after a fetch, by any process).

        Returns True if the bundle changed.
        """
        path = self._state_path(state.peer)
        if path is None:
            return False
        stamp = _stamp(path)
        state.state_stamp = stamp
        if stamp is None:
            return False
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise FederationError(f"permissions are {oct(mode & 0o777)}, not 0600")
            saved = json.loads(path.read_bytes())
            if not isinstance(saved, dict):
                raise FederationError("not a JSON object")
        except (OSError, ValueError, FederationError) as exc:
            logger.warning("federation: ignoring the state file %s: %s", path, exc)
            return False
        peer = state.peer
        if saved.get("trust_domain") != peer.trust_domain or saved.get("endpoint_url") != (
            peer.endpoint_url
        ):
            return False  # written for another configuration
        attempted = _number(saved.get("attempted_at"))
        if attempted is not None and (state.attempted_at is None or attempted > state.attempted_at):
            state.attempted_at = attempted
            error = saved.get("last_error")
            state.last_error = error if isinstance(error, str) else None
            failures = saved.get("failures")
            state.failures = failures if isinstance(failures, int) else 0
        document = saved.get("bundle")
        refreshed = _number(saved.get("refreshed_at"))
        if not isinstance(document, dict) or refreshed is None:
            return False
        if state.refreshed_at is not None and refreshed < state.refreshed_at:
            return False  # older than what we have
        bootstrap = state.file_stamp if state.origin == "bootstrap" else None
        if bootstrap is not None and bootstrap[0] / 1e9 > refreshed:
            return False  # the operator updated the bootstrap bundle since
        try:
            parsed = read_bundle(peer.trust_domain, json.dumps(document), allow_empty=True)
        except InvalidInputError as exc:
            logger.warning("federation: ignoring the saved bundle in %s: %s", path, exc.message)
            return False
        changed = parsed.bundle != state.bundle
        self._adopt(state, parsed, document, "endpoint", refreshed)
        return changed

    def _save(self, state: PeerState) -> None:
        path = self._state_path(state.peer)
        if path is None:
            return
        saved = {
            "trust_domain": state.peer.trust_domain,
            "endpoint_url": state.peer.endpoint_url,
            "bundle": state.document,
            "refreshed_at": state.refreshed_at if state.document is not None else None,
            "attempted_at": state.attempted_at,
            "next_refresh": state.next_refresh,
            "last_error": state.last_error,
            "failures": state.failures,
        }
        try:
            _write_atomically(path, json.dumps(saved, indent=2).encode() + b"\n")
        except OSError as exc:
            logger.warning("federation: cannot write %s: %s", path, exc)
            return
        state.state_stamp = _stamp(path)


def _stamp(path: Path | None) -> Stamp | None:
    if path is None:
        return None
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size, status.st_ino)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `path` (mode 0600) through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
