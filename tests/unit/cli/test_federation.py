"""`ztgate federation list | refresh`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from ztgate.clock import SystemClock
from ztgate.config import Settings
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.bundle import local_bundle

PARTNER = "partner.example"


def _federate(config: Path, entry: str) -> None:
    with config.open("a", encoding="utf-8") as handle:
        handle.write(f'\n[[identity.federation]]\ntrust_domain = "{PARTNER}"\n{entry}\n')


def test_list_without_federation(ztgate: Callable[..., Result]) -> None:
    result = ztgate("federation", "list")
    assert result.exit_code == 0, result.output
    assert "no federated trust domains" in result.stdout
    assert json.loads(ztgate("federation", "list", "--json").stdout) == []


def test_list_and_refresh_a_bundle_file(
    ztgate: Callable[..., Result],
    config: Path,
    settings: Settings,
    tmp_path: Path,
    flatten: Callable[[str], str],
) -> None:
    partner = CertificateAuthority.create(tmp_path / "partner", PARTNER, SystemClock())
    (settings.base_dir / "partner.json").write_text(json.dumps(local_bundle(partner)))
    _federate(config, 'bundle_file = "partner.json"')
    result = ztgate("federation", "list", "--json")
    assert result.exit_code == 0, result.output
    [status] = json.loads(result.stdout)
    assert status["trust_domain"] == PARTNER and status["source"] == "file"
    assert status["bundle_from"] == "file"
    assert (status["x509_roots"], status["jwt_keys"]) == (1, 1)
    table = flatten(ztgate("federation", "list").stdout)
    assert PARTNER in table and "1 X.509," in table and "(file)" in table
    assert "on change" in table and "partner.json" in table
    assert "s ago" in table
    assert ztgate("federation", "refresh").exit_code == 0


def test_refresh_fails_with_exit_1_and_says_why(
    ztgate: Callable[..., Result], config: Path, flatten: Callable[[str], str]
) -> None:
    _federate(config, 'bundle_endpoint_url = "https://127.0.0.1:9/bundle"')
    result = ztgate("federation", "refresh", "--json")
    assert result.exit_code == 1
    [status] = json.loads(result.stdout)
    assert status["last_error"] and status["failures"] == 1 and status["bundle_from"] is None
    listed = json.loads(ztgate("federation", "list", "--json").stdout)
    assert listed[0]["last_error"] == status["last_error"], "the status is kept"
    assert "none" in flatten(ztgate("federation", "list").stdout)


def test_refresh_of_an_unknown_domain_is_an_error(
    ztgate: Callable[..., Result], config: Path
) -> None:
    _federate(config, 'bundle_endpoint_url = "https://127.0.0.1:9/bundle"')
    result = ztgate("federation", "refresh", "nobody.example")
    assert result.exit_code != 0
    assert "nobody.example" in str(result.exception)
