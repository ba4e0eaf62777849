"""The certificate authority: keys on disk, loading, rotation and SVID issuance."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ztgate.errors import ConfigError, IdentityError, InvalidInputError
from ztgate.identity import _hazmat
from ztgate.identity.authority import JWT_ALGORITHM, STATE_FILE, CertificateAuthority
from ztgate.testing import FrozenClock

DOMAIN = "acme.example"
AGENT = "spiffe://acme.example/agent/mailer"
PASSPHRASE = b"correct horse battery staple"


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable unless the code says otherwise."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "ca"


@pytest.fixture
def ca(ca_dir: Path, clock: FrozenClock) -> CertificateAuthority:
    return CertificateAuthority.create(ca_dir, DOMAIN, clock)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def uris(certificate: x509.Certificate) -> list[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def path_length(certificate: x509.Certificate) -> int | None:
    return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length


def claims_of(token: str) -> dict[str, object]:
    return jwt.decode(token, options={"verify_signature": False})


# -- creating ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("permissive_umask")
def test_create_writes_private_keys_0600_and_public_certificates(
    ca_dir: Path, clock: FrozenClock
) -> None:
    ca = CertificateAuthority.create(ca_dir, DOMAIN, clock)
    authority = ca.current()
    keys = sorted(p.name for p in ca_dir.glob("*.key"))
    assert len(keys) == 3  # root, signing, jwt
    assert f"signing-{authority.id}.key" in keys
    assert f"jwt-{authority.id}.key" in keys
    for key in ca_dir.glob("*.key"):
        assert mode(key) == 0o600, key.name
        assert b"PRIVATE KEY" in key.read_bytes()
    certificates = sorted(ca_dir.glob("*.pem"))
    assert len(certificates) == 2  # root, signing
    for certificate in certificates:
        assert mode(certificate) == 0o644
        x509.load_pem_x509_certificate(certificate.read_bytes())
    assert (ca_dir / f"signing-{authority.id}.pem").read_bytes() == _hazmat.certificate_pem(
        authority.certificate
    )
    assert mode(ca_dir) & 0o077 == 0
    state = json.loads((ca_dir / STATE_FILE).read_text(encoding="utf-8"))
    assert state["trust_domain"] == DOMAIN
    assert [a["id"] for a in state["authorities"]] == [authority.id]


def test_create_keys_on_disk_are_the_authoritys_keys(ca: CertificateAuthority) -> None:
    authority = ca.current()
    on_disk = _hazmat.load_private_pem((ca.directory / f"signing-{authority.id}.key").read_bytes())
    assert on_disk.private_numbers() == authority.key.private_numbers()
    jwt_key = _hazmat.load_private_pem((ca.directory / f"jwt-{authority.id}.key").read_bytes())
    assert jwt_key.private_numbers() == authority.jwt_key.private_numbers()
    assert authority.jwt_key.private_numbers() != authority.key.private_numbers()


def test_create_refuses_a_second_ca_in_the_same_directory(
    ca: CertificateAuthority, ca_dir: Path, clock: FrozenClock
) -> None:
    before = {p.name: p.read_bytes() for p in ca_dir.iterdir()}
    with pytest.raises(ConfigError, match="already exists"):
        CertificateAuthority.create(ca_dir, DOMAIN, clock)
    with pytest.raises(ConfigError):
        CertificateAuthority.create(ca_dir, "other.example", clock)
    assert {p.name: p.read_bytes() for p in ca_dir.iterdir()} == before


def test_create_refuses_an_invalid_trust_domain(ca_dir: Path, clock: FrozenClock) -> None:
    with pytest.raises(InvalidInputError):
        CertificateAuthority.create(ca_dir, "ACME.example", clock)
    assert not (ca_dir / STATE_FILE).exists()


def test_create_accepts_the_trust_domain_id(ca_dir: Path, clock: FrozenClock) -> None:
    ca = CertificateAuthority.create(ca_dir, "spiffe://acme.example", clock)
    assert ca.trust_domain.name == DOMAIN


def test_root_and_intermediate_certificates(ca: CertificateAuthority, clock: FrozenClock) -> None:
    [root] = ca.roots()
    authority = ca.current()
    root.verify_directly_issued_by(root)
    authority.certificate.verify_directly_issued_by(root)
    assert path_length(root) == 1
    assert path_length(authority.certificate) == 0
    assert uris(root) == ["spiffe://acme.example"]
    assert uris(authority.certificate) == ["spiffe://acme.example"]
    assert root.not_valid_before_utc.timestamp() <= clock.now()
    assert root.not_valid_after_utc.timestamp() == clock.now() + 365 * 86400
    assert authority.not_after == clock.now() + 30 * 86400
    assert authority.certificate.not_valid_before_utc.timestamp() <= clock.now()
    assert authority.active_from == clock.now()
    assert authority.jwt_kid == f"ztgate-{authority.id}"


def test_create_honours_the_ttls(ca_dir: Path, clock: FrozenClock) -> None:
    ca = CertificateAuthority.create(ca_dir, DOMAIN, clock, root_ttl=7200, signing_ttl=3600)
    assert ca.roots()[0].not_valid_after_utc.timestamp() == clock.now() + 7200
    assert ca.current().not_after == clock.now() + 3600


# -- loading -----------------------------------------------------------------------------------


def test_load_round_trips(ca: CertificateAuthority, ca_dir: Path, clock: FrozenClock) -> None:
    ca.rotate(start_in=600)
    loaded = CertificateAuthority.load(ca_dir, clock)
    assert loaded.trust_domain.name == DOMAIN
    assert loaded.directory == ca_dir
    assert loaded.roots() == ca.roots()
    assert len(loaded.authorities()) == 2
    for mine, theirs in zip(ca.authorities(), loaded.authorities(), strict=True):
        assert theirs.id == mine.id
        assert theirs.certificate == mine.certificate
        assert theirs.active_from == mine.active_from
        assert theirs.key.private_numbers() == mine.key.private_numbers()
        assert theirs.jwt_key.private_numbers() == mine.jwt_key.private_numbers()
    assert loaded.current().id == ca.current().id


def test_a_loaded_ca_issues_svids_that_chain_to_the_same_root(
    ca: CertificateAuthority, ca_dir: Path, clock: FrozenClock
) -> None:
    loaded = CertificateAuthority.load(ca_dir, clock)
    svid = loaded.issue_x509_svid(AGENT)
    svid.leaf.verify_directly_issued_by(ca.current().certificate)
    svid.chain[1].verify_directly_issued_by(ca.roots()[0])


def test_encrypted_ca_keys_are_encrypted_on_disk(ca_dir: Path, clock: FrozenClock) -> None:
    ca = CertificateAuthority.create(ca_dir, DOMAIN, clock, passphrase=PASSPHRASE)
    ca.rotate(start_in=0)
    keys = list(ca_dir.glob("*.key"))
    assert len(keys) == 5
    for key in keys:
        assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"), key.name


def test_encrypted_ca_loads_with_its_passphrase(ca_dir: Path, clock: FrozenClock) -> None:
    ca = CertificateAuthority.create(ca_dir, DOMAIN, clock, passphrase=PASSPHRASE)
    ca.rotate(start_in=0)
    loaded = CertificateAuthority.load(ca_dir, clock, passphrase=PASSPHRASE)
    assert [a.id for a in loaded.authorities()] == [a.id for a in ca.authorities()]
    assert loaded.current().key.private_numbers() == ca.current().key.private_numbers()
    # ...and keeps encrypting what it writes later.
    new = loaded.rotate(start_in=0)
    assert (ca_dir / f"signing-{new.id}.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED")
    CertificateAuthority.load(ca_dir, clock, passphrase=PASSPHRASE)


@pytest.mark.parametrize("passphrase", [None, b"", b"wrong passphrase"])
def test_encrypted_ca_without_the_right_passphrase_is_a_config_error(
    ca_dir: Path, clock: FrozenClock, passphrase: bytes | None
) -> None:
    CertificateAuthority.create(ca_dir, DOMAIN, clock, passphrase=PASSPHRASE)
    with pytest.raises(ConfigError, match=r"\.key: ") as caught:
        CertificateAuthority.load(ca_dir, clock, passphrase=passphrase)
    assert "passphrase" in caught.value.message


def test_a_passphrase_for_an_unencrypted_ca_is_explained(
    ca: CertificateAuthority, ca_dir: Path, clock: FrozenClock
) -> None:
    with pytest.raises(ConfigError) as caught:
        CertificateAuthority.load(ca_dir, clock, passphrase=PASSPHRASE)
    # The key is *not* encrypted: telling the operator to set the passphrase misleads.
    assert "set the CA passphrase" not in caught.value.message


def test_load_of_an_empty_directory_is_a_config_error(tmp_path: Path, clock: FrozenClock) -> None:
    with pytest.raises(ConfigError, match="no certificate authority"):
        CertificateAuthority.load(tmp_path, clock)


def test_load_refuses_a_key_others_can_read(
    ca: CertificateAuthority, ca_dir: Path, clock: FrozenClock
) -> None:
    key = ca_dir / f"jwt-{ca.current().id}.key"
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="permissions"):
        CertificateAuthority.load(ca_dir, clock)


def _corrupt_state(ca_dir: Path, change: str) -> None:
    path = ca_dir / STATE_FILE
    state = json.loads(path.read_text(encoding="utf-8"))
    if change == "not json":
        path.write_text("{not json", encoding="utf-8")
        return
    if change == "no authorities":
        del state["authorities"]
    elif change == "missing key file":
        next(ca_dir.glob("jwt-*.key")).unlink()
    elif change == "unknown root":
        state["roots"] = ["000000000000"]
    elif change == "garbage certificate":
        next(ca_dir.glob("signing-*.pem")).write_text("garbage", encoding="utf-8")
    elif change == "garbage key":
        key = next(ca_dir.glob("root-*.key"))
        key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    elif change == "non-numeric active_from":
        state["authorities"][0]["active_from"] = "soon"
    elif change == "invalid trust domain":
        state["trust_domain"] = "ACME.example"
    elif change == "non-string trust domain":
        state["trust_domain"] = 42
    path.write_text(json.dumps(state), encoding="utf-8")


@pytest.mark.parametrize(
    "change",
    [
        "not json",
        "no authorities",
        "missing key file",
        "unknown root",
        "garbage certificate",
        "garbage key",
        "non-numeric active_from",
        "invalid trust domain",
        "non-string trust domain",
    ],
)
def test_a_damaged_ca_is_a_config_error(
    ca: CertificateAuthority, ca_dir: Path, clock: FrozenClock, change: str
) -> None:
    _corrupt_state(ca_dir, change)
    with pytest.raises(ConfigError):
        CertificateAuthority.load(ca_dir, clock)


# -- rotation ----------------------------------------------------------------------------------


def test_rotation_publishes_at_once_and_signs_from_the_start_time(
    ca: CertificateAuthority, clock: FrozenClock
) -> None:
    old = ca.current()
    new = ca.rotate(start_in=3600)
    assert new.id != old.id
    assert new.active_from == clock.now() + 3600
    assert [a.id for a in ca.published()] == [old.id, new.id]
    assert [a.id for a in ca.authorities()] == [old.id, new.id]
    assert ca.current().id == old.id
    assert ca.issue_x509_svid(AGENT).chain[1] == old.certificate
    assert jwt.get_unverified_header(ca.issue_jwt_svid(AGENT, ["gw"]))["kid"] == old.jwt_kid

    clock.advance(3599)
    assert ca.current().id == old.id

    clock.advance(1)
    assert ca.current().id == new.id
    svid = ca.issue_x509_svid(AGENT)
    assert svid.chain[1] == new.certificate
    svid.leaf.verify_directly_issued_by(new.certificate)
    assert jwt.get_unverified_header(ca.issue_jwt_svid(AGENT, ["gw"]))["kid"] == new.jwt_kid
    # The old authority stays published while SVIDs it signed may still be in use.
    assert {a.id for a in ca.published()} == {old.id, new.id}


def test_rotation_with_no_delay_switches_at_once(ca: CertificateAuthority) -> None:
    new = ca.rotate(start_in=0)
    assert ca.current().id == new.id


def test_the_new_authority_is_valid_during_the_overlap(
    ca: CertificateAuthority, clock: FrozenClock
) -> None:
    new = ca.rotate(start_in=3600, ttl=86400)
    new.certificate.verify_directly_issued_by(ca.roots()[0])
    assert path_length(new.certificate) == 0
    assert new.certificate.not_valid_before_utc.timestamp() <= clock.now()
    assert new.not_after == clock.now() + 3600 + 86400
    assert new.jwt_key.private_numbers() != ca.authorities()[0].jwt_key.private_numbers()
    assert new.key.private_numbers() != ca.authorities()[0].key.private_numbers()


def test_rotation_is_persisted(ca: CertificateAuthority, ca_dir: Path, clock: FrozenClock) -> None:
    new = ca.rotate(start_in=3600)
    clock.advance(3600)
    loaded = CertificateAuthority.load(ca_dir, clock)
    assert loaded.current().id == new.id
    assert loaded.current().active_from == new.active_from


def test_an_authority_never_outlives_the_root(ca_dir: Path, clock: FrozenClock) -> None:
    ca = CertificateAuthority.create(ca_dir, DOMAIN, clock, root_ttl=7200, signing_ttl=86400)
    assert ca.current().not_after == ca.roots()[0].not_valid_after_utc.timestamp()
    new = ca.rotate(start_in=0, ttl=86400)
    assert new.not_after == ca.roots()[0].not_valid_after_utc.timestamp()


def test_expired_authorities_leave_the_bundle(ca_dir: Path, clock: FrozenClock) -> None:
    ca = CertificateAuthority.create(ca_dir, DOMAIN, clock, signing_ttl=1000)
    old = ca.current()
    new = ca.rotate(start_in=500)
    clock.advance(999)
    assert {a.id for a in ca.published()} == {old.id, new.id}
    clock.advance(1)
    assert [a.id for a in ca.published()] == [new.id]
    assert [a.id for a in ca.authorities()] == [old.id, new.id]  # still listed


def test_newest_active_authority_signs(ca: CertificateAuthority, clock: FrozenClock) -> None:
    first = ca.current()
    second = ca.rotate(start_in=100)
    third = ca.rotate(start_in=50)
    assert ca.current().id == first.id
    clock.advance(50)
    assert ca.current().id == third.id
    clock.advance(50)
    assert ca.current().id == second.id  # started later than the third


def test_no_active_authority_is_an_identity_error(ca_dir: Path, clock: FrozenClock) -> None:
    ca = CertificateAuthority.create(ca_dir, DOMAIN, clock, signing_ttl=1000)
    ca.rotate(start_in=5000)  # published, not active yet
    clock.advance(2000)
    with pytest.raises(IdentityError, match="no signing authority is active"):
        ca.current()
    with pytest.raises(IdentityError):
        ca.issue_x509_svid(AGENT)
    with pytest.raises(IdentityError):
        ca.issue_jwt_svid(AGENT, ["gw"])
    clock.advance(3000)
    assert ca.current().id == ca.authorities()[1].id


def test_every_authority_expired_is_an_identity_error(ca_dir: Path, clock: FrozenClock) -> None:
    ca = CertificateAuthority.create(ca_dir, DOMAIN, clock, signing_ttl=1000)
    ca.current()
    clock.advance(1000)
    assert ca.published() == []
    with pytest.raises(IdentityError, match="rotate"):
        ca.current()


def test_an_authority_stops_signing_shortly_before_it_expires(
    ca_dir: Path, clock: FrozenClock
) -> None:
    ca = CertificateAuthority.create(ca_dir, DOMAIN, clock, signing_ttl=1000)
    clock.advance(939)
    ca.current()
    clock.advance(1)
    with pytest.raises(IdentityError):
        ca.current()


# -- X.509-SVIDs -------------------------------------------------------------------------------


def test_x509_svid(ca: CertificateAuthority, clock: FrozenClock) -> None:
    authority = ca.current()
    svid = ca.issue_x509_svid(AGENT, ttl=600)
    assert svid.spiffe_id == AGENT
    assert svid.chain == (svid.leaf, authority.certificate)
    assert uris(svid.leaf) == [AGENT]
    svid.leaf.verify_directly_issued_by(authority.certificate)
    assert svid.serial == svid.leaf.serial_number
    assert 0 < svid.serial < 2**159
    assert svid.not_after == clock.now() + 600
    assert svid.leaf.not_valid_after_utc.timestamp() == svid.not_after
    assert svid.leaf.not_valid_before_utc.timestamp() <= clock.now()
    constraints = svid.leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False
    assert svid.leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature


def test_x509_svid_serials_are_unique(ca: CertificateAuthority) -> None:
    serials = {ca.issue_x509_svid(AGENT).serial for _ in range(20)}
    assert len(serials) == 20


def test_generated_key_matches_the_certificate(ca: CertificateAuthority) -> None:
    svid = ca.issue_x509_svid(AGENT)
    assert svid.private_key is not None
    assert svid.private_key.public_key() == svid.leaf.public_key()
    signature = svid.private_key.sign(b"challenge", ec.ECDSA(hashes.SHA256()))
    public = svid.leaf.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, b"challenge", ec.ECDSA(hashes.SHA256()))
    # A fresh key per SVID.
    other = ca.issue_x509_svid(AGENT)
    assert other.private_key is not None
    assert other.private_key.private_numbers() != svid.private_key.private_numbers()


def test_a_given_public_key_returns_no_private_key(ca: CertificateAuthority) -> None:
    key = _hazmat.generate_key()
    svid = ca.issue_x509_svid(AGENT, key.public_key())
    assert svid.private_key is None
    assert svid.leaf.public_key() == key.public_key()


@pytest.mark.parametrize("ttl", [600, 1000, 5000, 86400])
def test_an_svid_never_outlives_its_issuer(ca_dir: Path, clock: FrozenClock, ttl: float) -> None:
    ca = CertificateAuthority.create(ca_dir, DOMAIN, clock, signing_ttl=1000)
    clock.advance(500)
    authority = ca.current()
    svid = ca.issue_x509_svid(AGENT, ttl=ttl)
    assert svid.not_after == min(clock.now() + ttl, authority.not_after)
    assert svid.not_after <= authority.not_after
    assert svid.leaf.not_valid_after_utc <= authority.certificate.not_valid_after_utc
    token = ca.issue_jwt_svid(AGENT, ["gw"], ttl=ttl)
    assert claims_of(token)["exp"] == min(int(clock.now()) + ttl, int(authority.not_after))


def test_svid_not_after_is_the_certificates_with_a_fractional_clock(ca_dir: Path) -> None:
    clock = FrozenClock(1_800_000_000.75)
    ca = CertificateAuthority.create(ca_dir, DOMAIN, clock)
    svid = ca.issue_x509_svid(AGENT, ttl=600)
    # X.509 keeps whole seconds: the SVID must not claim to live longer than its certificate.
    assert svid.not_after == svid.leaf.not_valid_after_utc.timestamp()


@pytest.mark.parametrize(
    "spiffe_id",
    [
        "spiffe://other.example/agent/mailer",
        "spiffe://acme.example",
        "spiffe://ACME.example/agent",
        "spiffe://acme.example/agent/",
        "spiffe://acme.example/../agent",
        "https://acme.example/agent",
        "",
    ],
)
def test_issuance_refuses_foreign_pathless_and_invalid_ids(
    ca: CertificateAuthority, spiffe_id: str
) -> None:
    with pytest.raises((InvalidInputError, IdentityError)):
        ca.issue_x509_svid(spiffe_id)
    with pytest.raises((InvalidInputError, IdentityError)):
        ca.issue_jwt_svid(spiffe_id, ["gw"])


@pytest.mark.parametrize("spiffe_id", ["spiffe://other.example/agent", "spiffe://acme.example"])
def test_refused_ids_are_invalid_input_as_documented(
    ca: CertificateAuthority, spiffe_id: str
) -> None:
    # issue_x509_svid's docstring: "InvalidInputError: the SPIFFE ID is invalid or outside
    # this trust domain"; IdentityError is reserved for "no signing authority is active".
    with pytest.raises(InvalidInputError):
        ca.issue_x509_svid(spiffe_id)


# -- JWT-SVIDs ---------------------------------------------------------------------------------


def test_jwt_svid_claims_and_header(ca: CertificateAuthority, clock: FrozenClock) -> None:
    authority = ca.current()
    token = ca.issue_jwt_svid(AGENT, ["gateway"], ttl=300)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == JWT_ALGORITHM == "ES256"
    assert header["kid"] == authority.jwt_kid
    assert header["typ"] == "JWT"
    claims = jwt.decode(
        token,
        authority.jwt_key.public_key(),
        algorithms=["ES256"],
        audience="gateway",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert claims["sub"] == AGENT
    assert claims["aud"] == "gateway"
    assert claims["iat"] == int(clock.now())
    assert claims["exp"] == int(clock.now()) + 300
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) >= 16


def test_jwt_svid_is_not_signed_by_the_x509_key(ca: CertificateAuthority) -> None:
    authority = ca.current()
    token = ca.issue_jwt_svid(AGENT, ["gateway"])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            token,
            authority.key.public_key(),
            algorithms=["ES256"],
            audience="gateway",
            options={"verify_exp": False, "verify_iat": False},
        )


def test_jwt_svid_with_several_audiences_lists_them(ca: CertificateAuthority) -> None:
    claims = claims_of(ca.issue_jwt_svid(AGENT, ["gateway", "billing"]))
    assert claims["aud"] == ["gateway", "billing"]


def test_jwt_svid_ids_are_unique(ca: CertificateAuthority) -> None:
    ids = {claims_of(ca.issue_jwt_svid(AGENT, ["gw"]))["jti"] for _ in range(20)}
    assert len(ids) == 20


def test_jwt_svid_times_follow_the_injected_clock(ca_dir: Path) -> None:
    clock = FrozenClock(2_500_000_000.0)
    ca = CertificateAuthority.create(ca_dir, DOMAIN, clock)
    claims = claims_of(ca.issue_jwt_svid(AGENT, ["gw"], ttl=120))
    assert claims["iat"] == 2_500_000_000
    assert claims["exp"] == 2_500_000_120


@pytest.mark.parametrize("audience", [[], [""], ["gw", ""]])
def test_jwt_svid_needs_an_audience(ca: CertificateAuthority, audience: list[str]) -> None:
    with pytest.raises((InvalidInputError, IdentityError), match="audience"):
        ca.issue_jwt_svid(AGENT, audience)


def test_no_audience_is_invalid_input_as_documented(ca: CertificateAuthority) -> None:
    # issue_jwt_svid's docstring: "InvalidInputError: invalid SPIFFE ID, or no audience".
    with pytest.raises(InvalidInputError):
        ca.issue_jwt_svid(AGENT, [])
