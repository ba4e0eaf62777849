"""The guards a gateway runs, as the settings say."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from ztgate.config import load_settings
from ztgate.errors import NotFoundError
from ztgate.guards.assembly import Guards
from ztgate.guards.judge import ChatJudge
from ztgate.guards.resolver import SystemResolver
from ztgate.guards.taskinfo import TaskInfo
from ztgate.store.hot import MemoryHotState
from ztgate.testing import FrozenClock


def guards_for(tmp_path: Path, toml: str, clock: FrozenClock) -> Guards:
    config = tmp_path / "ztgate.toml"
    config.write_text(toml, encoding="utf-8")
    return Guards(load_settings(config), MemoryHotState(clock))


def test_every_guard_by_default_but_the_judge(tmp_path: Path, clock: FrozenClock) -> None:
    guards = guards_for(tmp_path, "", clock)
    assert [c.name for c in guards.checks()] == ["pinning", "provenance", "dlp", "egress"]
    assert [c.name for c in guards.result_checks()] == ["provenance_record"]
    assert isinstance(guards.resolver, SystemResolver)
    assert guards.judge is None
    assert guards.justification(["write"])._ledger is guards.ledger


def test_guards_can_be_switched_off(tmp_path: Path, clock: FrozenClock) -> None:
    guards = guards_for(
        tmp_path,
        "[guards]\ndlp = false\npinning = false\njustification_not_copied = false\n"
        "[guards.provenance]\nenabled = false\n[guards.egress]\nenabled = false\n",
        clock,
    )
    assert guards.checks() == [] and guards.result_checks() == []
    assert guards.justification(["write"])._ledger is None


async def test_the_judge_when_enabled(
    tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUDGE_KEY", "k")
    guards = guards_for(
        tmp_path,
        '[guards.judge]\nenabled = true\napi_key_env = "JUDGE_KEY"\n'
        "[guards.egress]\nresolve = false\n",
        clock,
    )
    assert isinstance(guards.judge, ChatJudge)
    assert guards.checks()[-1].name == "intent"
    assert guards.resolver is None
    await guards.stop()


async def test_tasks_come_from_the_registry(tmp_path: Path, clock: FrozenClock) -> None:
    guards = guards_for(tmp_path, "", clock)
    assert await guards.tasks.get("t1") is None  # no registry: no tasks

    def get(task_id: str) -> object:
        if task_id != "t1":
            raise NotFoundError("task", task_id)
        return SimpleNamespace(id="t1", intent="Do the thing", expires_at=123)

    guards.use_tasks(get)
    assert await guards.tasks.get("t1") == TaskInfo("t1", "Do the thing", 123.0)
    assert await guards.tasks.get("t2") is None
    await guards.stop()
