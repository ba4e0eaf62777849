"""`ztgate ca show | rotate | bundle`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from ztgate.clock import SystemClock
from ztgate.config import Settings
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.bundle import parse_bundle


def _show(ztgate: Callable[..., Result]) -> dict[str, object]:
    result = ztgate("ca", "show", "--json")
    assert result.exit_code == 0, result.output
    shown: dict[str, object] = json.loads(result.stdout)
    return shown


def test_show_names_the_trust_domain_root_and_active_authority(
    ztgate: Callable[..., Result], settings: Settings
) -> None:
    shown = _show(ztgate)
    assert shown["trust_domain"] == settings.identity.trust_domain
    assert isinstance(shown["roots"], list) and len(shown["roots"]) == 1
    authorities = shown["authorities"]
    assert isinstance(authorities, list)
    assert [a["state"] for a in authorities] == ["active"]


def test_show_as_a_table(ztgate: Callable[..., Result], flatten: Callable[[str], str]) -> None:
    result = ztgate("ca", "show")
    assert result.exit_code == 0, result.output
    assert "trust domain spiffe://ztgate.local" in flatten(result.stdout)
    assert "active" in result.stdout


def test_rotate_publishes_a_prepared_authority_that_signs_later(
    ztgate: Callable[..., Result], settings: Settings
) -> None:
    result = ztgate("ca", "rotate", "--start-in", "3600")
    assert result.exit_code == 0, result.output
    states = [a["state"] for a in _show(ztgate)["authorities"]]  # type: ignore[union-attr]
    assert states == ["active", "prepared"]
    ca = CertificateAuthority.load(settings.path(settings.identity.ca_dir), SystemClock())
    newest = ca.authorities()[-1]
    assert ca.current().id != newest.id  # not signing yet
    assert newest in ca.published()  # but already in the bundle


def test_rotate_now_switches_the_signer(ztgate: Callable[..., Result], settings: Settings) -> None:
    assert ztgate("ca", "rotate", "--start-in", "0").exit_code == 0
    states = [a["state"] for a in _show(ztgate)["authorities"]]  # type: ignore[union-attr]
    assert states == ["retiring", "active"]


def test_bundle_is_a_spiffe_bundle_with_every_published_key(
    ztgate: Callable[..., Result], settings: Settings, tmp_path: Path
) -> None:
    assert ztgate("ca", "rotate", "--start-in", "60").exit_code == 0
    out = tmp_path / "bundle.json"
    result = ztgate("ca", "bundle", "-o", str(out))
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    uses = sorted(key["use"] for key in document["keys"])
    assert uses == ["jwt-svid", "jwt-svid", "x509-svid"]
    parsed = parse_bundle(settings.identity.trust_domain, out.read_text())
    assert len(parsed.x509_roots) == 1 and len(parsed.jwt_keys) == 2


def test_without_a_ca_the_error_says_to_run_init(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    config = tmp_path / "ztgate.toml"
    config.write_text("")
    result = cli("--config", str(config), "ca", "show")
    assert result.exit_code != 0
    assert "ztgate init" in str(result.exception)


@pytest.mark.parametrize("passphrase", ["s3cret passphrase"])
def test_an_encrypted_ca_needs_its_passphrase(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, passphrase: str
) -> None:
    config = tmp_path / "ztgate.toml"
    monkeypatch.setenv("ZTGATE_CA_PASSPHRASE", passphrase)
    assert cli("--config", str(config), "init").exit_code == 0
    key = next((tmp_path / ".ztgate/ca").glob("signing-*.key"))
    assert b"ENCRYPTED" in key.read_bytes()
    assert cli("--config", str(config), "ca", "show").exit_code == 0
    monkeypatch.delenv("ZTGATE_CA_PASSPHRASE")
    result = cli("--config", str(config), "ca", "show")
    assert result.exit_code != 0
    assert "passphrase" in str(result.exception)
