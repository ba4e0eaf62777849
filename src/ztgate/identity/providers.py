"""Hot-path providers for the `authenticate` check: the local bundle and the registered IDs.

Both are called once per call and must be cheap when nothing changed:

- `LocalBundles` stats the CA's `state.json` (one `os.stat`) and reloads the
  CA only when its mtime or size moved (a rotation rewrites it), or when the
  loaded bundle is older than `max_age` (so authorities that expired drop out).
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
from ztgate.errors import ConfigError, InvalidInputError
from ztgate.identity.authority import STATE_FILE, CertificateAuthority
from ztgate.identity.bundle import parse_bundle, trust_bundle
from ztgate.identity.entries import EntryRegistry
from ztgate.identity.verify import TrustBundle

DEFAULT_MAX_AGE = 300.0


class LocalBundles:
    """The local trust domain's bundle, reloaded when the CA's state file changes."""

    def __init__(
        self,
        ca_dir: Path,
        clock: Clock,
        *,
        passphrase: bytes | None = None,
        max_age: float = DEFAULT_MAX_AGE,
        federated: Sequence[tuple[str, Path]] = (),
    ) -> None:
        """Load the CA in `ca_dir` now, and the bundles of `federated` trust domains.

        `federated` pairs a trust domain name with the file holding its SPIFFE
        bundle (for example one fetched from a SPIRE server's bundle endpoint);
        a file is read again when it changes.

        Raises:
            ConfigError: no CA, it cannot be loaded, or a federated bundle is
                unreadable, invalid, or names the local trust domain.
        """
        self._ca_dir = ca_dir
        self._federated = tuple(federated)
        self._state = ca_dir / STATE_FILE
        self._clock = clock
        self._passphrase = passphrase
        self._max_age = max_age
        self._stamp: tuple[tuple[int, int], ...] | None = None
        self._loaded_at = 0.0
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
        return self._bundles

    def reload(self) -> Mapping[str, TrustBundle]:
        """Load the CA again, unconditionally.

        Raises:
            ConfigError: the CA cannot be loaded.
        """
        stamp = self._stamps()
        ca = CertificateAuthority.load(self._ca_dir, self._clock, passphrase=self._passphrase)
        local = trust_bundle(ca)
        bundles = {local.trust_domain: local}
        for domain, path in self._federated:
            if domain == local.trust_domain:
                raise ConfigError(str(path), "", f"{domain} is the local trust domain")
            try:
                bundles[domain] = parse_bundle(domain, path.read_bytes())
            except OSError as exc:
                raise ConfigError(str(path), "", f"cannot read the bundle: {exc.strerror}") from exc
            except InvalidInputError as exc:
                raise ConfigError(str(path), "", exc.message) from exc
        self._bundles = MappingProxyType(bundles)
        self._stamp = stamp
        self.sequence += 1
        self._loaded_at = self._clock.now()
        return self._bundles

    def _stamps(self) -> tuple[tuple[int, int], ...] | None:
        try:
            return tuple(
                (status.st_mtime_ns, status.st_size)
                for status in map(os.stat, [self._state, *(p for _, p in self._federated)])
            )
        except OSError:
            return None


class RegisteredIds:
    """The SPIFFE IDs with a registration entry, in memory; `reload()` when entries change."""

    def __init__(self, registry: EntryRegistry) -> None:
        """Read the entries now."""
        self._registry = registry
        self._ids: frozenset[str] = frozenset()
        self.reload()

    def __call__(self, spiffe_id: str) -> bool:
        """True if `spiffe_id` has a registration entry (as of the last reload)."""
        return spiffe_id in self._ids

    def reload(self) -> frozenset[str]:
        """Read the entries table again.

        Raises:
            StoreUnavailableError: the database cannot be read.
        """
        self._ids = frozenset(entry.spiffe_id for entry in self._registry.list())
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)
