"""Hot-path providers for the `authenticate` check: the local bundle and the registered IDs.

Both are called once per call and must be cheap when nothing changed:

- `LocalBundles` stats the CA's `state.json` (one `os.stat`) and reloads the
  CA only when its mtime or size moved (a rotation rewrites it), or when the
  loaded bundle is older than `max_age` (so authorities that expired drop out);
  federated domains' bundles come from a `Federation`, whose `bundles()` only
  stats files (fetching from bundle endpoints is a background task's job).
- `RegisteredIds` is an in-memory set of the SPIFFE IDs that have a
  registration entry; the gateway calls `reload()` when the "entries"
  generation moves, so a lookup is one set membership test.

Each returns the same object until its content changes, which is what the
check's chain cache keys on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from ztgate.clock import Clock
from ztgate.errors import ConfigError
from ztgate.identity.authority import STATE_FILE, CertificateAuthority
from ztgate.identity.bundle import trust_bundle
from ztgate.identity.entries import EntryRegistry
from ztgate.identity.federation import Federation, Peer
from ztgate.identity.verify import TrustBundle

DEFAULT_MAX_AGE = 300.0


class LocalBundles:
    """The local trust domain's bundle, reloaded when the CA's state file changes.

    With a `Federation`, the federated domains' bundles too (see
    `ztgate.identity.federation`): they are merged in whenever its mapping
    changes, which costs nothing more than its own `bundles()` call.
    """

    def __init__(
        self,
        ca_dir: Path,
        clock: Clock,
        *,
        passphrase: bytes | None = None,
        max_age: float = DEFAULT_MAX_AGE,
        federated: Sequence[tuple[str, Path]] = (),
        federation: Federation | None = None,
    ) -> None:
        """Load the CA in `ca_dir` now, and the bundles of the federated trust domains.

        `federated` pairs a trust domain name with the file holding its SPIFFE
        bundle (a shorthand for a `Federation` of bundle files); `federation`
        is the full thing, with bundle endpoints.

        Raises:
            ConfigError: no CA, it cannot be loaded, or a federated bundle is
                unreadable, invalid, or names the local trust domain.
        """
        if federated and federation is None:
            peers = [Peer(domain, bundle_file=path) for domain, path in federated]
            federation = Federation(peers, clock)
        self.federation = federation
        self._ca_dir = ca_dir
        self._state = ca_dir / STATE_FILE
        self._clock = clock
        self._passphrase = passphrase
        self._max_age = max_age
        self._stamp: tuple[int, int] | None = None
        self._loaded_at = 0.0
        self._local: TrustBundle | None = None
        self._foreign: Mapping[str, TrustBundle] = MappingProxyType({})
        self._bundles: Mapping[str, TrustBundle] = MappingProxyType({})
        # SPIFFE bundle `spiffe_sequence`: starts at the load time in seconds
        # (so a restart does not go backwards) and moves on every reload.
        self.sequence = int(clock.now())
        self.reload()

    def __call__(self) -> Mapping[str, TrustBundle]:
        """The bundles by trust domain name (reloaded first if the CA changed)."""
        stamp = self._stamps()  # None: keep the last good bundles; the next stat may succeed
        if (stamp is not None and stamp != self._stamp) or (
            self._clock.now() - self._loaded_at > self._max_age
        ):
            self.reload()
        elif self.federation is not None and self.federation.bundles() is not self._foreign:
            self._merge()
        return self._bundles

    def reload(self) -> Mapping[str, TrustBundle]:
        """Load the CA again, unconditionally.

        Raises:
            ConfigError: the CA cannot be loaded, or a federated domain is the local one.
        """
        stamp = self._stamps()
        ca = CertificateAuthority.load(self._ca_dir, self._clock, passphrase=self._passphrase)
        local = trust_bundle(ca)
        if self.federation is not None:
            self.federation.local_trust_domain = local.trust_domain
            if any(peer.trust_domain == local.trust_domain for peer in self.federation.peers()):
                raise ConfigError(str(self._ca_dir), "", f"{local.trust_domain} is federated")
        self._local = local
        self._merge()
        self.sequence += 1
        self._stamp = stamp
        self._loaded_at = self._clock.now()
        return self._bundles

    def local(self) -> TrustBundle:
        """The local trust domain's bundle (as of the last reload)."""
        assert self._local is not None  # noqa: S101 - loaded in __init__
        return self._local

    def _merge(self) -> None:
        local = self.local()
        foreign = self.federation.bundles() if self.federation is not None else self._foreign
        self._bundles = MappingProxyType({**foreign, local.trust_domain: local})
        self._foreign = foreign

    def _stamps(self) -> tuple[int, int] | None:
        try:
            status = os.stat(self._state)
        except OSError:
            return None
        return (status.st_mtime_ns, status.st_size)


class RegisteredIds:
    """The SPIFFE IDs with a registration entry, in memory; `reload()` when entries change."""

    def __init__(self, registry: EntryRegistry) -> None:
        """Read the entries now."""
        self._registry = registry
        self._ids: frozenset[str] = frozenset()
        self._owners: dict[str, str] = {}
        self.reload()

    def __call__(self, spiffe_id: str) -> bool:
        """True if `spiffe_id` has a registration entry (as of the last reload)."""
        return spiffe_id in self._ids

    def owner(self, spiffe_id: str) -> str:
        """The owner of `spiffe_id`'s oldest registration entry ("" if none or unregistered)."""
        return self._owners.get(spiffe_id, "")

    def reload(self) -> frozenset[str]:
        """Read the entries table again.

        Raises:
            StoreUnavailableError: the database cannot be read.
        """
        entries = sorted(self._registry.list(), key=lambda e: (e.created_at, e.id), reverse=True)
        self._ids = frozenset(entry.spiffe_id for entry in entries)
        self._owners = {entry.spiffe_id: entry.owner for entry in entries}
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)
