"""The certificate authority of one trust domain: keys on disk, rotation, issuance.

Layout under the CA directory (private keys 0600, optionally encrypted with a
passphrase taken from the environment):

    state.json                      trust domain, authorities, when each starts
    root-<id>.pem / root-<id>.key   the root (trust anchor, in the X.509 bundle)
    signing-<id>.pem / .key         an intermediate that signs X.509-SVIDs
    jwt-<id>.key                    the key that signs JWT-SVIDs (its kid in the bundle)

Rotation introduces a new signing authority ahead of time: it is published
(its JWT key in the bundle) at once and starts signing `start_in` seconds
later, so relying parties learn it before they meet it. An authority stays in
the bundle until its own certificate expires, which is after every SVID it
signed (an SVID never outlives its issuer).
"""

from __future__ import annotations

import datetime
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from spiffe import TrustDomain

from ztgate import keyfiles
from ztgate.clock import Clock
from ztgate.errors import ConfigError, IdentityError, InvalidInputError
from ztgate.identity import _hazmat
from ztgate.identity.spiffe_id import parse_spiffe_id, parse_trust_domain, trust_domain_id

STATE_FILE = "state.json"
JWT_ALGORITHM = "ES256"


@dataclass(frozen=True, slots=True)
class SigningAuthority:
    """An intermediate CA and a JWT key that sign SVIDs from `active_from` on."""

    id: str
    certificate: x509.Certificate
    key: _hazmat.PrivateKey
    jwt_key: _hazmat.PrivateKey
    active_from: float

    @property
    def jwt_kid(self) -> str:
        """The JWT key's id in the bundle."""
        return f"ztgate-{self.id}"

    @property
    def not_after(self) -> float:
        """When the intermediate expires."""
        return self.certificate.not_valid_after_utc.timestamp()


@dataclass(frozen=True, slots=True)
class X509Svid:
    """An issued X.509-SVID: the leaf, the chain up to (not including) the root, its key."""

    spiffe_id: str
    chain: tuple[x509.Certificate, ...]
    private_key: _hazmat.PrivateKey | None
    serial: int
    not_after: float

    @property
    def leaf(self) -> x509.Certificate:
        """The SVID certificate itself."""
        return self.chain[0]


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


class CertificateAuthority:
    """One trust domain's CA, loaded from (and saved to) its directory."""

    def __init__(
        self,
        directory: Path,
        trust_domain: TrustDomain,
        roots: list[tuple[x509.Certificate, _hazmat.PrivateKey]],
        authorities: list[SigningAuthority],
        clock: Clock,
        passphrase: bytes | None,
    ) -> None:
        self.directory = directory
        self.trust_domain = trust_domain
        self._roots = roots
        self._authorities = authorities
        self._clock = clock
        self._passphrase = passphrase

    # -- creating and loading ----------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        trust_domain: str,
        clock: Clock,
        *,
        passphrase: bytes | None = None,
        root_ttl: float = 365 * 86400,
        signing_ttl: float = 30 * 86400,
    ) -> CertificateAuthority:
        """Create a new trust domain: a root and a first signing authority.

        Raises:
            InvalidInputError: the trust domain name is invalid.
            ConfigError: a CA already exists in `directory`.
        """
        domain = parse_trust_domain(trust_domain)
        if (directory / STATE_FILE).exists():
            raise ConfigError(str(directory), "", "a certificate authority already exists here")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        now = clock.now()
        root_key = _hazmat.generate_key()
        root = _hazmat.build_ca_certificate(
            subject_key=root_key.public_key(),
            issuer_key=root_key,
            issuer=None,
            trust_domain_id=trust_domain_id(domain),
            common_name=f"ztgate root {domain.name}",
            not_before=_utc(now - 60),
            not_after=_utc(now + root_ttl),
            path_length=1,
        )
        ca = cls(directory, domain, [(root, root_key)], [], clock, passphrase)
        ca._save_root(root, root_key)
        ca._new_authority(active_from=now, ttl=signing_ttl)
        return ca

    @classmethod
    def load(
        cls, directory: Path, clock: Clock, *, passphrase: bytes | None = None
    ) -> CertificateAuthority:
        """Load the CA kept in `directory`.

        Raises:
            ConfigError: missing, unreadable, keys too widely readable, or the
                passphrase is wrong or missing.
        """
        state_path = directory / STATE_FILE
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(
                str(directory), "", "no certificate authority (run `ztgate init`)"
            ) from exc
        except (OSError, ValueError) as exc:
            raise ConfigError(str(state_path), "", f"unreadable CA state: {exc}") from exc
        try:
            domain = parse_trust_domain(state["trust_domain"])
            roots = [
                (
                    x509.load_pem_x509_certificate((directory / f"root-{r}.pem").read_bytes()),
                    _load_key(directory / f"root-{r}.key", passphrase),
                )
                for r in state["roots"]
            ]
            authorities = [
                SigningAuthority(
                    id=a["id"],
                    certificate=x509.load_pem_x509_certificate(
                        (directory / f"signing-{a['id']}.pem").read_bytes()
                    ),
                    key=_load_key(directory / f"signing-{a['id']}.key", passphrase),
                    jwt_key=_load_key(directory / f"jwt-{a['id']}.key", passphrase),
                    active_from=float(a["active_from"]),
                )
                for a in state["authorities"]
            ]
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError, OSError, InvalidInputError) as exc:
            raise ConfigError(
                str(directory), "", f"damaged or incomplete certificate authority: {exc}"
            ) from exc
        return cls(directory, domain, roots, authorities, clock, passphrase)

    # -- rotation ------------------------------------------------------------------

    def rotate(self, *, start_in: float = 3600.0, ttl: float = 30 * 86400) -> SigningAuthority:
        """Introduce a new signing authority, published now, signing from now + `start_in`."""
        return self._new_authority(active_from=self._clock.now() + start_in, ttl=ttl)

    def authorities(self) -> list[SigningAuthority]:
        """Every signing authority, oldest first (expired ones included)."""
        return list(self._authorities)

    def roots(self) -> list[x509.Certificate]:
        """The trust anchors (the X.509 bundle)."""
        return [root for root, _ in self._roots]

    def current(self) -> SigningAuthority:
        """The authority that signs now: the newest one already active and unexpired.

        Raises:
            IdentityError: none is active (all expired: run `ztgate ca rotate`).
        """
        now = self._clock.now()
        usable = [a for a in self._authorities if a.active_from <= now < a.not_after - 60]
        if not usable:
            raise IdentityError(
                "no signing authority is active; run `ztgate ca rotate --start-in 0`"
            )
        # The newest to start wins; on a tie, the one introduced last.
        return max(reversed(usable), key=lambda a: a.active_from)

    def published(self) -> list[SigningAuthority]:
        """Authorities relying parties must trust now: unexpired, active or about to be."""
        now = self._clock.now()
        return [a for a in self._authorities if a.not_after > now]

    # -- issuance --------------------------------------------------------------------

    def issue_x509_svid(
        self, spiffe_id: str, public_key: _hazmat.PublicKey | None = None, *, ttl: float = 600
    ) -> X509Svid:
        """Sign an X.509-SVID for `spiffe_id` (generating its key unless one is given).

        Raises:
            InvalidInputError: the SPIFFE ID is invalid or outside this trust domain.
            IdentityError: no signing authority is active.
        """
        self._check_member(spiffe_id)
        authority = self.current()
        now = self._clock.now()
        private_key = None
        if public_key is None:
            private_key = _hazmat.generate_key()
            public_key = private_key.public_key()
        requested_not_after = min(now + ttl, authority.not_after)
        serial = _hazmat.serial_number()
        leaf = _hazmat.build_leaf_certificate(
            spiffe_id=spiffe_id,
            subject_key=public_key,
            issuer_key=authority.key,
            issuer=authority.certificate,
            not_before=_utc(now - 30),
            not_after=_utc(requested_not_after),
            serial=serial,
        )
        # X.509 keeps whole seconds: report the expiry the certificate states.
        not_after = leaf.not_valid_after_utc.timestamp()
        return X509Svid(spiffe_id, (leaf, authority.certificate), private_key, serial, not_after)

    def issue_jwt_svid(self, spiffe_id: str, audience: list[str], *, ttl: float = 300) -> str:
        """Sign a JWT-SVID (ES256) for `spiffe_id` and `audience`.

        Raises:
            InvalidInputError: invalid SPIFFE ID, or no audience.
            IdentityError: no signing authority is active.
        """
        self._check_member(spiffe_id)
        if not audience or not all(isinstance(a, str) and a for a in audience):
            raise InvalidInputError("a JWT-SVID needs at least one audience")
        authority = self.current()
        now = int(self._clock.now())
        claims: dict[str, Any] = {
            "sub": spiffe_id,
            "aud": audience if len(audience) > 1 else audience[0],
            "iat": now,
            "exp": int(min(now + ttl, authority.not_after)),
            "jti": secrets.token_hex(16),
        }
        return jwt.encode(
            claims,
            authority.jwt_key,
            algorithm=JWT_ALGORITHM,
            headers={"kid": authority.jwt_kid, "typ": "JWT"},
        )

    def _check_member(self, spiffe_id: str) -> None:
        parsed = parse_spiffe_id(spiffe_id)
        if parsed.trust_domain.name != self.trust_domain.name:
            raise InvalidInputError(f"{spiffe_id} is not in trust domain {self.trust_domain.name}")
        if parsed.path in ("", "/"):
            raise InvalidInputError("an SVID's SPIFFE ID must have a path")

    # -- persistence ---------------------------------------------------------------------

    def _new_authority(self, *, active_from: float, ttl: float) -> SigningAuthority:
        root, root_key = self._roots[-1]
        now = self._clock.now()
        key = _hazmat.generate_key()
        not_after = min(active_from + ttl, root.not_valid_after_utc.timestamp())
        certificate = _hazmat.build_ca_certificate(
            subject_key=key.public_key(),
            issuer_key=root_key,
            issuer=root,
            trust_domain_id=trust_domain_id(self.trust_domain),
            common_name=f"ztgate signing {self.trust_domain.name}",
            not_before=_utc(min(now, active_from) - 60),
            not_after=_utc(not_after),
            path_length=0,
        )
        authority = SigningAuthority(
            id=secrets.token_hex(6),
            certificate=certificate,
            key=key,
            jwt_key=_hazmat.generate_key(),
            active_from=active_from,
        )
        keyfiles.write_public(
            self.directory / f"signing-{authority.id}.pem", _hazmat.certificate_pem(certificate)
        )
        keyfiles.write_private(
            self.directory / f"signing-{authority.id}.key",
            _hazmat.private_pem(key, self._passphrase),
        )
        keyfiles.write_private(
            self.directory / f"jwt-{authority.id}.key",
            _hazmat.private_pem(authority.jwt_key, self._passphrase),
        )
        self._authorities.append(authority)
        self._save_state()
        return authority

    def _save_root(self, root: x509.Certificate, key: _hazmat.PrivateKey) -> None:
        root_id = _hazmat.fingerprint(root).hex()[:12]
        keyfiles.write_public(self.directory / f"root-{root_id}.pem", _hazmat.certificate_pem(root))
        keyfiles.write_private(
            self.directory / f"root-{root_id}.key", _hazmat.private_pem(key, self._passphrase)
        )

    def _save_state(self) -> None:
        state = {
            "trust_domain": self.trust_domain.name,
            "roots": [_hazmat.fingerprint(root).hex()[:12] for root, _ in self._roots],
            "authorities": [{"id": a.id, "active_from": a.active_from} for a in self._authorities],
        }
        temporary = self.directory / f"{STATE_FILE}.tmp"
        temporary.write_text(json.dumps(state, indent=2), encoding="utf-8")
        temporary.replace(self.directory / STATE_FILE)


def _load_key(path: Path, passphrase: bytes | None) -> _hazmat.PrivateKey:
    data = keyfiles.read_private(path)
    try:
        return _hazmat.load_private_pem(data, passphrase)
    except TypeError as exc:
        if passphrase:
            raise ConfigError(
                str(path), "", "a passphrase is set but this key is not encrypted"
            ) from exc
        raise ConfigError(
            str(path), "", "the key is encrypted: set the CA passphrase environment variable"
        ) from exc
    except ValueError as exc:
        raise ConfigError(str(path), "", "cannot load the key (wrong passphrase?)") from exc
