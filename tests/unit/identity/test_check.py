"""The authenticate check: valid SVIDs are allowed with the principal's facts; attacks denied."""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from ztgate.identity import _hazmat
from ztgate.identity.authority import CertificateAuthority, X509Svid
from ztgate.identity.check import (
    MAX_CHAIN_LENGTH,
    NO_CREDENTIALS,
    AuthenticationCheck,
    ChainFormatError,
    split_der_chain,
)
from ztgate.identity.entries import EntryRegistry
from ztgate.identity.revocation import LiveRevocations, RevocationRegistry, RevocationSet
from ztgate.identity.verify import TrustBundle, VerifiedSvid, verify_jwt_svid, verify_x509_svid
from ztgate.models import Credentials, Outcome, Verdict
from ztgate.pipeline import CallContext
from ztgate.store.database import Database
from ztgate.testing import FrozenClock, make_call

OURS = "acme.example"
PARTNER = "partner.example"
AGENT = "spiffe://acme.example/agent/mailer"
STRANGER = "spiffe://acme.example/agent/stranger"
PARTNER_AGENT = "spiffe://partner.example/agent/billing"
AUDIENCE = "ztgate"


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def ours(tmp_path: Path, clock: FrozenClock) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ours", OURS, clock)


@pytest.fixture
def partner(tmp_path: Path, clock: FrozenClock) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "partner", PARTNER, clock)


def bundle_of(ca: CertificateAuthority, *, local: bool) -> TrustBundle:
    return TrustBundle(
        trust_domain=ca.trust_domain.name,
        x509_roots=tuple(ca.roots()),
        jwt_keys={a.jwt_kid: a.jwt_key.public_key() for a in ca.published()},
        local=local,
    )


class Bundles:
    """A swappable bundle provider, as the gateway holds one."""

    def __init__(self, bundles: Mapping[str, TrustBundle]) -> None:
        self.current = bundles

    def __call__(self) -> Mapping[str, TrustBundle]:
        return self.current


@pytest.fixture
def bundles(ours: CertificateAuthority, partner: CertificateAuthority) -> Bundles:
    return Bundles({OURS: bundle_of(ours, local=True), PARTNER: bundle_of(partner, local=False)})


@pytest.fixture
def entries(database: Database, clock: FrozenClock) -> EntryRegistry:
    registry = EntryRegistry(database, clock, OURS)
    registry.register(AGENT, ["unix:uid:1000"])
    return registry


@pytest.fixture
def revocations(database: Database, clock: FrozenClock) -> RevocationRegistry:
    return RevocationRegistry(database, clock, retention=630)


@pytest.fixture
def live(database: Database, clock: FrozenClock) -> Iterator[LiveRevocations]:
    provider = LiveRevocations(database, clock)
    yield provider
    provider.close()


class CountingVerifier:
    """Counts calls through to the real X.509-SVID verifier."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(
        self, chain: Sequence[x509.Certificate], *args: Any, **kwargs: Any
    ) -> VerifiedSvid:
        self.calls += 1
        return verify_x509_svid(chain, *args, **kwargs)


@pytest.fixture
def verifier() -> CountingVerifier:
    return CountingVerifier()


@pytest.fixture
def check(
    bundles: Bundles, live: LiveRevocations, entries: EntryRegistry, verifier: CountingVerifier
) -> AuthenticationCheck:
    return AuthenticationCheck(
        audience=AUDIENCE,
        bundles=bundles,
        revocations=live,
        registered=entries,
        x509_verifier=verifier,
    )


def der(svid: X509Svid | Sequence[x509.Certificate]) -> bytes:
    chain = svid.chain if isinstance(svid, X509Svid) else svid
    return b"".join(_hazmat.certificate_der(c) for c in chain)


async def run(
    check: AuthenticationCheck,
    clock: FrozenClock,
    *,
    certificate: bytes | None = None,
    bearer: str | None = None,
) -> Verdict:
    call = make_call(credentials=Credentials(bearer=bearer, client_certificate=certificate))
    return await check(call, CallContext(clock=clock))


def denied(verdict: Verdict, *fragments: str) -> str:
    assert verdict.outcome is Outcome.DENY, verdict
    assert verdict.check == "authenticate"
    assert not verdict.facts
    for fragment in fragments:
        assert fragment in verdict.reason, verdict.reason
    return verdict.reason


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


def ca_leaf(ca: CertificateAuthority, now: float) -> x509.Certificate:
    """A certificate naming AGENT, signed by our intermediate, but CA:TRUE."""
    authority = ca.current()
    key = _hazmat.generate_key().public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")]))
        .issuer_name(authority.certificate.subject)
        .public_key(key)
        .serial_number(_hazmat.serial_number())
        .not_valid_before(_utc(now - 30))
        .not_valid_after(_utc(now + 600))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(AGENT)]), critical=False
        )
        .sign(authority.key, hashes.SHA256())
    )


# -- allowed -------------------------------------------------------------------------------------


async def test_a_valid_x509_svid_is_allowed_with_the_principals_facts(
    check: AuthenticationCheck, ours: CertificateAuthority, clock: FrozenClock
) -> None:
    verdict = await run(check, clock, certificate=der(ours.issue_x509_svid(AGENT)))
    assert verdict.outcome is Outcome.ALLOW, verdict
    assert dict(verdict.facts) == {
        "principal.spiffe_id": AGENT,
        "principal.trust_domain": OURS,
        "principal.local": True,
        "principal.credential": "x509",
    }


async def test_a_valid_jwt_svid_is_allowed_with_the_principals_facts(
    check: AuthenticationCheck, ours: CertificateAuthority, clock: FrozenClock
) -> None:
    verdict = await run(check, clock, bearer=ours.issue_jwt_svid(AGENT, [AUDIENCE]))
    assert verdict.outcome is Outcome.ALLOW, verdict
    assert dict(verdict.facts) == {
        "principal.spiffe_id": AGENT,
        "principal.trust_domain": OURS,
        "principal.local": True,
        "principal.credential": "jwt",
    }


async def test_a_federated_svid_needs_no_local_registration(
    check: AuthenticationCheck, partner: CertificateAuthority, clock: FrozenClock
) -> None:
    verdict = await run(check, clock, certificate=der(partner.issue_x509_svid(PARTNER_AGENT)))
    assert verdict.outcome is Outcome.ALLOW, verdict
    assert verdict.facts["principal.local"] is False
    assert verdict.facts["principal.trust_domain"] == PARTNER
    token = partner.issue_jwt_svid(PARTNER_AGENT, [AUDIENCE])
    assert (await run(check, clock, bearer=token)).outcome is Outcome.ALLOW


async def test_both_credentials_naming_the_same_id_are_allowed(
    check: AuthenticationCheck, ours: CertificateAuthority, clock: FrozenClock
) -> None:
    verdict = await run(
        check,
        clock,
        certificate=der(ours.issue_x509_svid(AGENT)),
        bearer=ours.issue_jwt_svid(AGENT, [AUDIENCE]),
    )
    assert verdict.outcome is Outcome.ALLOW
    assert verdict.facts["principal.credential"] == "x509"


async def test_the_check_runs_in_a_pipeline(
    check: AuthenticationCheck, ours: CertificateAuthority, clock: FrozenClock
) -> None:
    from ztgate.pipeline import Pipeline

    ctx = CallContext(clock=clock)
    call = make_call(credentials=Credentials(client_certificate=der(ours.issue_x509_svid(AGENT))))
    decision = await Pipeline([check]).decide(call, ctx)
    assert decision.outcome is Outcome.ALLOW
    assert ctx.facts["principal.spiffe_id"] == AGENT


# -- refused -------------------------------------------------------------------------------------


async def test_no_credentials_are_refused(check: AuthenticationCheck, clock: FrozenClock) -> None:
    assert denied(await run(check, clock)) == NO_CREDENTIALS
    assert denied(await run(check, clock, certificate=b"", bearer="")) == NO_CREDENTIALS


async def test_an_expired_x509_svid_is_refused(
    check: AuthenticationCheck, ours: CertificateAuthority, clock: FrozenClock
) -> None:
    svid = ours.issue_x509_svid(AGENT, ttl=60)
    clock.advance(60 + 31)
    denied(await run(check, clock, certificate=der(svid)), "validity", "expired")


async def test_a_cached_x509_svid_is_refused_once_it_expires(
    check: AuthenticationCheck, ours: CertificateAuthority, clock: FrozenClock
) -> None:
    svid = ours.issue_x509_svid(AGENT, ttl=60)
    assert (await run(check, clock, certificate=der(svid))).outcome is Outcome.ALLOW
    clock.advance(60 + 31)
    denied(await run(check, clock, certificate=der(svid)), "expired")
    assert check.cached == 0


async def test_an_expired_jwt_svid_is_refused(
    check: AuthenticationCheck, ours: CertificateAuthority, clock: FrozenClock
) -> None:
    token = ours.issue_jwt_svid(AGENT, [AUDIENCE], ttl=60)
    clock.advance(60 + 31)
    reason = denied(await run(check, clock, bearer=token), "expired")
    assert token not in reason


async def test_a_token_for_another_audience_is_refused(
    check: AuthenticationCheck, ours: CertificateAuthority, clock: FrozenClock
) -> None:
    token = ours.issue_jwt_svid(AGENT, ["someone-else"])
    denied(await run(check, clock, bearer=token), "audience")


async def test_alg_none_is_refused(
    check: AuthenticationCheck, ours: CertificateAuthority, clock: FrozenClock
) -> None:
    now = int(clock.now())
    header = {"alg": "none", "typ": "JWT", "kid": ours.current().jwt_kid}
    payload = {"sub": AGENT, "aud": AUDIENCE, "exp": now + 300}
    token = (
        ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
            for part in (header, payload)
        )
        + "."
    )
    reason = denied(await run(check, clock, bearer=token), "algorithm")
    assert token not in reason


async def test_garbage_tokens_are_refused_without_echoing_them(
    check: AuthenticationCheck, clock: FrozenClock
) -> None:
    for token in ["not-a-jwt", "a.b.c", "x" * 20_000]:
        reason = denied(await run(check, clock, bearer=token))
        assert token not in reason


async def test_an_svid_from_an_unknown_ca_is_refused(
    check: AuthenticationCheck, tmp_path: Path, clock: FrozenClock
) -> None:
    rogue = CertificateAuthority.create(tmp_path / "rogue", OURS, clock)
    denied(await run(check, clock, certificate=der(rogue.issue_x509_svid(AGENT))), "chain")
    denied(await run(check, clock, bearer=rogue.issue_jwt_svid(AGENT, [AUDIENCE])), "key")


async def test_a_ca_certificate_presented_as_leaf_is_refused(
    check: AuthenticationCheck, ours: CertificateAuthority, clock: FrozenClock
) -> None:
    chain = [ca_leaf(ours, clock.now()), ours.current().certificate]
    denied(await run(check, clock, certificate=der(chain)), "CA:TRUE")


async def test_another_trust_domain_is_refused(
    check: AuthenticationCheck, tmp_path: Path, clock: FrozenClock
) -> None:
    evil = CertificateAuthority.create(tmp_path / "evil", "evil.example", clock)
    spiffe_id = "spiffe://evil.example/agent/mailer"
    denied(
        await run(check, clock, certificate=der(evil.issue_x509_svid(spiffe_id))),
        "evil.example is not a trusted trust domain",
    )
    denied(
        await run(check, clock, bearer=evil.issue_jwt_svid(spiffe_id, [AUDIENCE])),
        "evil.example is not a trusted trust domain",
    )


async def test_an_unregistered_local_id_is_refused(
    check: AuthenticationCheck, ours: CertificateAuthority, clock: FrozenClock
) -> None:
    denied(
        await run(check, clock, certificate=der(ours.issue_x509_svid(STRANGER))),
        "not registered",
        STRANGER,
    )
    denied(
        await run(check, clock, bearer=ours.issue_jwt_svid(STRANGER, [AUDIENCE])),
        "not registered",
    )


async def test_registration_can_be_a_plain_callable(
    bundles: Bundles, ours: CertificateAuthority, clock: FrozenClock
) -> None:
    check = AuthenticationCheck(
        audience=AUDIENCE,
        bundles=bundles,
        revocations=RevocationSet,
        registered={AGENT}.__contains__,
    )
    assert (await run(check, clock, bearer=ours.issue_jwt_svid(AGENT, [AUDIENCE]))).outcome is (
        Outcome.ALLOW
    )
    denied(await run(check, clock, bearer=ours.issue_jwt_svid(STRANGER, [AUDIENCE])))


async def test_a_revoked_spiffe_id_is_refused(
    check: AuthenticationCheck,
    ours: CertificateAuthority,
    revocations: RevocationRegistry,
    clock: FrozenClock,
) -> None:
    revocations.revoke_agent(AGENT, reason="stolen laptop")
    reason = denied(
        await run(check, clock, certificate=der(ours.issue_x509_svid(AGENT))), "revoked", AGENT
    )
    assert "stolen laptop" not in reason  # the operator's note is not for the caller
    denied(await run(check, clock, bearer=ours.issue_jwt_svid(AGENT, [AUDIENCE])), "revoked")


async def test_a_revoked_serial_is_refused_and_a_new_certificate_is_not(
    check: AuthenticationCheck,
    ours: CertificateAuthority,
    revocations: RevocationRegistry,
    clock: FrozenClock,
) -> None:
    stolen = ours.issue_x509_svid(AGENT)
    revocations.revoke_serial(hex(stolen.serial))
    denied(await run(check, clock, certificate=der(stolen)), "revoked", "serial")
    fresh = ours.issue_x509_svid(AGENT)
    assert (await run(check, clock, certificate=der(fresh))).outcome is Outcome.ALLOW


async def test_a_revoked_entry_is_refused(
    check: AuthenticationCheck,
    ours: CertificateAuthority,
    entries: EntryRegistry,
    revocations: RevocationRegistry,
    clock: FrozenClock,
) -> None:
    [entry] = entries.list()
    revocations.revoke_entry(entry.id)
    denied(await run(check, clock, certificate=der(ours.issue_x509_svid(AGENT))), "revoked")
    denied(await run(check, clock, bearer=ours.issue_jwt_svid(AGENT, [AUDIENCE])), "revoked")


async def test_a_removed_entry_is_refused_on_the_next_call(
    check: AuthenticationCheck,
    ours: CertificateAuthority,
    entries: EntryRegistry,
    clock: FrozenClock,
) -> None:
    certificate = der(ours.issue_x509_svid(AGENT))
    assert (await run(check, clock, certificate=certificate)).outcome is Outcome.ALLOW
    entries.remove(entries.list()[0].id)
    denied(await run(check, clock, certificate=certificate), "not registered")


async def test_a_revoked_agent_with_a_cached_certificate_is_refused_on_the_next_call(
    check: AuthenticationCheck,
    ours: CertificateAuthority,
    revocations: RevocationRegistry,
    verifier: CountingVerifier,
    clock: FrozenClock,
) -> None:
    certificate = der(ours.issue_x509_svid(AGENT))
    assert (await run(check, clock, certificate=certificate)).outcome is Outcome.ALLOW
    assert (await run(check, clock, certificate=certificate)).outcome is Outcome.ALLOW
    assert check.cached == 1
    revocations.revoke_agent(AGENT)
    denied(await run(check, clock, certificate=certificate), "revoked")
    assert verifier.calls == 2  # the cache was dropped when the revocations changed


async def test_a_rotated_out_ca_is_refused_on_the_next_call(
    check: AuthenticationCheck,
    ours: CertificateAuthority,
    partner: CertificateAuthority,
    bundles: Bundles,
    clock: FrozenClock,
) -> None:
    certificate = der(ours.issue_x509_svid(AGENT))
    assert (await run(check, clock, certificate=certificate)).outcome is Outcome.ALLOW
    bundles.current = {PARTNER: bundle_of(partner, local=False)}  # our CA dropped
    denied(await run(check, clock, certificate=certificate), "not a trusted trust domain")


async def test_the_second_verification_of_a_chain_is_served_from_the_cache(
    check: AuthenticationCheck,
    ours: CertificateAuthority,
    verifier: CountingVerifier,
    clock: FrozenClock,
) -> None:
    certificate = der(ours.issue_x509_svid(AGENT))
    for _ in range(5):
        assert (await run(check, clock, certificate=certificate)).outcome is Outcome.ALLOW
    assert verifier.calls == 1
    other = der(ours.issue_x509_svid(AGENT))
    assert (await run(check, clock, certificate=other)).outcome is Outcome.ALLOW
    assert verifier.calls == 2
    check.clear_cache()
    assert (await run(check, clock, certificate=certificate)).outcome is Outcome.ALLOW
    assert verifier.calls == 3


async def test_failures_are_not_cached(
    check: AuthenticationCheck,
    ours: CertificateAuthority,
    verifier: CountingVerifier,
    clock: FrozenClock,
) -> None:
    chain = der([ca_leaf(ours, clock.now()), ours.current().certificate])
    for _ in range(3):
        denied(await run(check, clock, certificate=chain))
    assert verifier.calls == 3
    assert check.cached == 0


async def test_the_cache_is_bounded(
    bundles: Bundles, ours: CertificateAuthority, clock: FrozenClock
) -> None:
    check = AuthenticationCheck(
        audience=AUDIENCE,
        bundles=bundles,
        revocations=lambda: RevocationSet(),
        registered=lambda _: True,
        cache_size=2,
    )
    for _ in range(4):
        certificate = der(ours.issue_x509_svid(AGENT))
        assert (await run(check, clock, certificate=certificate)).outcome is Outcome.ALLOW
        assert check.cached <= 2


async def test_credentials_naming_different_ids_are_refused(
    check: AuthenticationCheck, ours: CertificateAuthority, clock: FrozenClock
) -> None:
    denied(
        await run(
            check,
            clock,
            certificate=der(ours.issue_x509_svid(AGENT)),
            bearer=ours.issue_jwt_svid(STRANGER, [AUDIENCE]),
        ),
        "different",
    )


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x01\x02",
        b"\x30",
        b"\x30\x82\xff\xff" + b"\x00" * 10,
        b"\x30\x80\x00\x00",
        b"\x30\x03\x02\x01\x01",
    ],
    ids=["not-der", "header-only", "truncated", "indefinite", "not-a-certificate"],
)
async def test_malformed_certificates_are_refused(
    check: AuthenticationCheck, clock: FrozenClock, data: bytes
) -> None:
    denied(await run(check, clock, certificate=data))


async def test_a_trailing_garbage_byte_is_refused(
    check: AuthenticationCheck, ours: CertificateAuthority, clock: FrozenClock
) -> None:
    denied(await run(check, clock, certificate=der(ours.issue_x509_svid(AGENT)) + b"\x00"))


def test_split_der_chain(ours: CertificateAuthority) -> None:
    svid = ours.issue_x509_svid(AGENT)
    parts = split_der_chain(der(svid))
    assert parts == [_hazmat.certificate_der(c) for c in svid.chain]
    with pytest.raises(ChainFormatError, match="at most"):
        split_der_chain(der(svid) * MAX_CHAIN_LENGTH)
    with pytest.raises(ChainFormatError, match="larger"):
        split_der_chain(b"\x30" * 70_000)


def test_an_audience_is_required(bundles: Bundles) -> None:
    with pytest.raises(ValueError, match="audience"):
        AuthenticationCheck(
            audience="", bundles=bundles, revocations=RevocationSet, registered=lambda _: True
        )


class CountingJwtVerifier:
    """Counts calls through to the real JWT-SVID verifier."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, token: str, *args: Any, **kwargs: Any) -> VerifiedSvid:
        self.calls += 1
        return verify_jwt_svid(token, *args, **kwargs)


@pytest.fixture
def jwt_counting(
    bundles: Bundles, live: LiveRevocations, entries: EntryRegistry
) -> tuple[AuthenticationCheck, CountingJwtVerifier]:
    counter = CountingJwtVerifier()
    check = AuthenticationCheck(
        audience=AUDIENCE,
        bundles=bundles,
        revocations=live,
        registered=entries,
        jwt_verifier=counter,
    )
    return check, counter


async def test_a_verified_token_is_served_from_the_cache_until_it_expires(
    jwt_counting: tuple[AuthenticationCheck, CountingJwtVerifier],
    ours: CertificateAuthority,
    clock: FrozenClock,
) -> None:
    check, counter = jwt_counting
    token = ours.issue_jwt_svid(AGENT, [AUDIENCE], ttl=60)
    for _ in range(5):
        assert (await run(check, clock, bearer=token)).outcome is Outcome.ALLOW
    assert counter.calls == 1
    clock.advance(60 + 31)  # past exp and the 30 s skew: verified again, and refused
    denied(await run(check, clock, bearer=token), "expired")
    assert counter.calls == 2


async def test_a_revoked_agent_with_a_cached_token_is_refused_on_the_next_call(
    jwt_counting: tuple[AuthenticationCheck, CountingJwtVerifier],
    ours: CertificateAuthority,
    revocations: RevocationRegistry,
    clock: FrozenClock,
) -> None:
    check, _ = jwt_counting
    token = ours.issue_jwt_svid(AGENT, [AUDIENCE])
    assert (await run(check, clock, bearer=token)).outcome is Outcome.ALLOW
    revocations.revoke_agent(AGENT)
    denied(await run(check, clock, bearer=token), "revoked")


async def test_a_token_for_another_audience_is_never_served_from_the_cache(
    jwt_counting: tuple[AuthenticationCheck, CountingJwtVerifier],
    ours: CertificateAuthority,
    clock: FrozenClock,
) -> None:
    check, counter = jwt_counting
    wrong = ours.issue_jwt_svid(AGENT, ["someone-else"])
    for _ in range(2):
        denied(await run(check, clock, bearer=wrong), "audience")
    assert counter.calls == 2  # failures are not cached
