"""Reporting loads and rejections: log, metrics, the status file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ztgate.policy.status import Reporter, read_status, write_atomically
from ztgate.testing import FrozenClock

from .conftest import Load


def test_a_load_and_a_rejection_are_recorded(
    tmp_path: Path, load: Load, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    path = tmp_path / "data" / "policy-status.json"
    reporter = Reporter(clock, path, registry)
    snapshot = load("permit (principal, action, resource);")
    caplog.set_level(logging.INFO, "ztgate.policy.status")
    reporter.loaded(snapshot, first=True)
    status = read_status(path)
    assert status is not None
    assert status["in_force"]["version"] == snapshot.version
    assert status["in_force"]["policies"] == 1
    assert status["last_attempt"] == {"at": clock.now(), "ok": True, "problems": []}
    assert registry.get_sample_value("ztgate_policy_in_sync") == 1
    assert registry.get_sample_value("ztgate_policy_policies") == 1

    clock.advance(5)
    reporter.rejected(["main.cedar:2: unexpected token"], snapshot)
    status = read_status(path)
    assert status is not None
    assert status["in_force"]["version"] == snapshot.version  # still in force
    assert status["last_attempt"]["ok"] is False
    assert status["last_attempt"]["problems"] == ["main.cedar:2: unexpected token"]
    assert registry.get_sample_value("ztgate_policy_in_sync") == 0
    assert registry.get_sample_value("ztgate_policy_reloads_total", {"result": "loaded"}) == 1
    assert registry.get_sample_value("ztgate_policy_reloads_total", {"result": "rejected"}) == 1
    assert f"version {snapshot.version} stays in force" in caplog.text
    assert "main.cedar:2: unexpected token" in caplog.text


def test_an_unwritable_status_file_is_only_a_warning(
    tmp_path: Path, load: Load, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    Reporter(clock, blocker / "status.json").loaded(load("permit (principal, action, resource);"))
    assert "cannot write the policy status file" in caplog.text


def test_read_status_of_nothing_or_garbage_is_none(tmp_path: Path) -> None:
    assert read_status(tmp_path / "absent.json") is None
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    assert read_status(tmp_path / "bad.json") is None
    (tmp_path / "list.json").write_text("[]", encoding="utf-8")
    assert read_status(tmp_path / "list.json") is None


def test_writes_replace_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    write_atomically(path, "one")
    write_atomically(path, "two")
    assert path.read_text(encoding="utf-8") == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]
