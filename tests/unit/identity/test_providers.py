"""The hot-path providers: the local bundle (reloaded on CA change) and the registered IDs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ztgate.errors import ConfigError
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.bundle import local_bundle
from ztgate.identity.entries import EntryRegistry
from ztgate.identity.providers import LocalBundles, RegisteredIds
from ztgate.identity.verify import verify_jwt_svid
from ztgate.store.database import Database
from ztgate.testing import FrozenClock


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca", "example.org", FrozenClock())


def test_the_bundle_is_the_same_object_until_the_ca_changes(ca: CertificateAuthority) -> None:
    clock = FrozenClock()
    bundles = LocalBundles(ca.directory, clock)
    first = bundles()
    assert set(first) == {"example.org"}
    assert first["example.org"].local
    assert bundles() is first
    authority = ca.rotate(start_in=0)
    second = bundles()
    assert second is not first
    assert authority.jwt_kid in second["example.org"].jwt_keys
    assert bundles() is second


def test_the_bundle_is_reloaded_when_too_old(ca: CertificateAuthority) -> None:
    clock = FrozenClock()
    bundles = LocalBundles(ca.directory, clock, max_age=60)
    first = bundles()
    clock.advance(30)
    assert bundles() is first
    clock.advance(31)
    assert bundles() is not first


def test_a_missing_ca_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        LocalBundles(tmp_path / "nothing", FrozenClock())


def test_a_vanished_state_file_keeps_the_last_bundle(ca: CertificateAuthority) -> None:
    bundles = LocalBundles(ca.directory, FrozenClock())
    first = bundles()
    (ca.directory / "state.json").rename(ca.directory / "state.json.bak")
    assert bundles() is first


def test_registered_ids_follow_reload(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'z.db'}")
    database.migrate()
    try:
        registry = EntryRegistry(database, FrozenClock(), "example.org")
        registry.register("spiffe://example.org/a", ["unix:uid:1000"])
        registered = RegisteredIds(registry)
        assert registered("spiffe://example.org/a")
        assert not registered("spiffe://example.org/b")
        entry = registry.register("spiffe://example.org/b", ["unix:uid:1001"])
        assert not registered("spiffe://example.org/b")  # until reloaded
        assert registered.reload() == {"spiffe://example.org/a", "spiffe://example.org/b"}
        assert registered("spiffe://example.org/b")
        assert len(registered) == 2
        registry.remove(entry.id)
        registered.reload()
        assert not registered("spiffe://example.org/b")
    finally:
        database.dispose()


def test_registered_ids_know_each_owner(tmp_path: Path) -> None:
    """The owner of the oldest entry, for the policy check's principals."""
    database = Database(f"sqlite:///{tmp_path / 'owners.db'}")
    database.migrate()
    clock = FrozenClock()
    try:
        registry = EntryRegistry(database, clock, "example.org")
        registry.register("spiffe://example.org/a", ["unix:uid:1"], owner="alice")
        clock.advance(1)
        registry.register("spiffe://example.org/a", ["unix:uid:2"], owner="bob")
        registered = RegisteredIds(registry)
        assert registered.owner("spiffe://example.org/a") == "alice"
        assert registered.owner("spiffe://example.org/nobody") == ""
    finally:
        database.dispose()


# -- federation --------------------------------------------------------------------------


@pytest.fixture
def partner(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "partner", "partner.example", FrozenClock())


def _write_bundle(partner: CertificateAuthority, path: Path) -> Path:
    path.write_text(json.dumps(local_bundle(partner)))
    return path


def test_a_federated_bundle_is_trusted_but_not_local(
    ca: CertificateAuthority, partner: CertificateAuthority, tmp_path: Path
) -> None:
    clock = FrozenClock()
    file = _write_bundle(partner, tmp_path / "partner.json")
    bundles = LocalBundles(ca.directory, clock, federated=[("partner.example", file)])()
    assert set(bundles) == {"example.org", "partner.example"}
    assert bundles["example.org"].local and not bundles["partner.example"].local
    token = partner.issue_jwt_svid("spiffe://partner.example/agent/a", ["ztgate"])
    verified = verify_jwt_svid(token, "ztgate", bundles, clock.now())
    assert verified.trust_domain == "partner.example" and not verified.local


def test_a_changed_federated_bundle_is_read_again(
    ca: CertificateAuthority, partner: CertificateAuthority, tmp_path: Path
) -> None:
    file = _write_bundle(partner, tmp_path / "partner.json")
    bundles = LocalBundles(ca.directory, FrozenClock(), federated=[("partner.example", file)])
    first = bundles()
    authority = partner.rotate(start_in=0)
    _write_bundle(partner, file)
    second = bundles()
    assert second is not first
    assert authority.jwt_kid in second["partner.example"].jwt_keys


@pytest.mark.parametrize("problem", ["missing", "garbage", "local"])
def test_an_unusable_federated_bundle_is_a_config_error(
    ca: CertificateAuthority, partner: CertificateAuthority, tmp_path: Path, problem: str
) -> None:
    file = tmp_path / "partner.json"
    domain = "partner.example"
    if problem == "garbage":
        file.write_text("{not json")
    elif problem == "local":
        _write_bundle(ca, file)
        domain = "example.org"
    with pytest.raises(ConfigError):
        LocalBundles(ca.directory, FrozenClock(), federated=[(domain, file)])
