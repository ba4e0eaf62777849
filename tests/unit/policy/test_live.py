"""Hot reload: edits take effect on the next call; a bad edit leaves the old set in force."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from ztgate.errors import PolicyLoadError
from ztgate.policy import loader
from ztgate.policy.live import LivePolicies, Watch
from ztgate.policy.model import PolicySnapshot
from ztgate.policy.status import read_status
from ztgate.testing import FrozenClock
from ztgate.tools.model import Tool

from .conftest import tools

ALLOW = '@id("all")\npermit (principal, action, resource);\n'
DENY_READS = (
    '@id("no-reads")\nforbid (principal, action, resource) when { resource.risk == "read" };\n'
)
BROKEN = "permit (principal, action, resource) when { (( };\n"


def write(directory: Path, text: str, name: str = "main.cedar") -> None:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


class Catalog:
    """Stands for the gateway's catalog: a new object when the tools change."""

    def __init__(self, listed: Sequence[Tool]) -> None:
        self.tools = list(listed)


def live_for(
    directory: Path, clock: FrozenClock, **kwargs: object
) -> tuple[LivePolicies, list[Catalog]]:
    holder = [Catalog(tools())]
    live = LivePolicies(directory, clock, status_path=directory.parent / "status.json", **kwargs)  # type: ignore[arg-type]
    live.start(
        lambda: holder[0], lambda catalog: catalog.tools if isinstance(catalog, Catalog) else ()
    )
    return live, holder


def test_the_watch_sees_edits_additions_and_removals(policy_dir: Path) -> None:
    watch = Watch(policy_dir)
    empty = watch.signature()
    assert watch.signature() == empty
    write(policy_dir, ALLOW)
    one = watch.signature()
    assert one != empty
    path = policy_dir / "main.cedar"
    os.utime(path, ns=(1, 1))
    assert watch.signature() != one
    write(policy_dir, ALLOW, "team/extra.cedar")
    with_sub = watch.signature()
    assert any("extra.cedar" in entry[0] for entry in with_sub)
    write(policy_dir, DENY_READS, "team/extra.cedar")
    assert watch.signature() != with_sub
    (policy_dir / "tags.toml").write_text("", encoding="utf-8")
    assert any(entry[0].endswith("tags.toml") for entry in watch.signature())
    path.unlink()
    assert not any(entry[0].endswith("main.cedar") for entry in watch.signature())


def test_a_missing_directory_has_a_signature_too(tmp_path: Path) -> None:
    watch = Watch(tmp_path / "absent")
    first = watch.signature()
    (tmp_path / "absent").mkdir()
    assert watch.signature() != first


async def test_an_edit_takes_effect_on_the_next_call(policy_dir: Path, clock: FrozenClock) -> None:
    write(policy_dir, ALLOW)
    live, _ = live_for(policy_dir, clock)
    first = await live.current()
    assert first is not None and list(first.rules) == ["all"]
    assert await live.current() is first  # nothing changed: nothing reloaded
    write(policy_dir, ALLOW + DENY_READS)
    second = await live.current()
    assert second is not None and list(second.rules) == ["all", "no-reads"]
    status = read_status(policy_dir.parent / "status.json")
    assert status is not None and status["in_force"]["version"] == second.version


async def test_a_broken_edit_is_rejected_and_the_old_set_stays(
    policy_dir: Path, clock: FrozenClock
) -> None:
    write(policy_dir, ALLOW)
    live, _ = live_for(policy_dir, clock)
    good = await live.current()
    write(policy_dir, BROKEN)
    assert await live.current() is good
    assert live.last_problems == ["main.cedar:1: unexpected token `}`"]
    status = read_status(policy_dir.parent / "status.json")
    assert status is not None
    assert status["last_attempt"]["ok"] is False
    assert good is not None and status["in_force"]["version"] == good.version
    # The same broken files are not tried again on every call...
    calls: list[int] = []
    original = live._load
    live._load = lambda d, t: calls.append(1) or original(d, t)  # type: ignore[method-assign]
    assert await live.current() is good
    assert calls == []
    # ...but the next edit is.
    write(policy_dir, ALLOW + DENY_READS)
    fixed = await live.current()
    assert fixed is not good and fixed is not None and "no-reads" in fixed.rules
    assert live.last_problems == []


async def test_a_tools_change_reloads_against_the_new_schema(
    policy_dir: Path, clock: FrozenClock
) -> None:
    write(policy_dir, ALLOW)
    live, holder = live_for(policy_dir, clock)
    first = await live.current()
    assert first is not None and "pay" in first.arguments
    holder[0] = Catalog([t for t in tools() if t.name != "pay"])
    second = await live.current()
    assert second is not None and second is not first and "pay" not in second.arguments


async def test_a_start_that_fails_leaves_nothing_in_force(
    policy_dir: Path, clock: FrozenClock
) -> None:
    write(policy_dir, BROKEN)
    live = LivePolicies(policy_dir, clock)
    with pytest.raises(PolicyLoadError, match=r"main\.cedar:1"):
        live.start(lambda: None, lambda catalog: tools())
    assert await live.current() is None


async def test_an_unexpected_loader_failure_keeps_the_old_set(
    policy_dir: Path, clock: FrozenClock
) -> None:
    write(policy_dir, ALLOW)
    live, _ = live_for(policy_dir, clock)
    good = await live.current()

    def explode(directory: Path, listed: Sequence[Tool]) -> PolicySnapshot:
        raise RuntimeError("bug")

    live._load = explode  # type: ignore[method-assign]
    write(policy_dir, ALLOW + DENY_READS)
    assert await live.current() is good
    assert live.last_problems == ["the policy set could not be loaded: RuntimeError"]


async def test_the_directory_is_looked_at_at_most_every_check_interval(
    policy_dir: Path, clock: FrozenClock
) -> None:
    write(policy_dir, ALLOW)
    live, _ = live_for(policy_dir, clock, check_interval=2.0)
    first = await live.current()
    write(policy_dir, ALLOW + DENY_READS)
    assert await live.current() is first
    clock.advance(2.0)
    assert await live.current() is not first


@pytest.mark.parametrize("new_text", [ALLOW + DENY_READS, BROKEN])
async def test_calls_during_a_reload_wait_for_it_and_never_go_undecided(
    policy_dir: Path, clock: FrozenClock, new_text: str
) -> None:
    write(policy_dir, ALLOW)
    release = threading.Event()
    entered = threading.Event()
    loads: list[int] = []

    def slow_load(directory: Path, listed: Sequence[Tool]) -> PolicySnapshot:
        loads.append(1)
        if len(loads) > 1:  # the reload, not the start
            entered.set()
            assert release.wait(10)
        return loader.load(loader.read(directory), listed)

    live, _ = live_for(policy_dir, clock, load=slow_load)
    old = live.snapshot
    write(policy_dir, new_text)
    waiting = [asyncio.create_task(live.current()) for _ in range(50)]
    await asyncio.to_thread(entered.wait, 10)
    await asyncio.sleep(0.01)
    assert not any(task.done() for task in waiting)  # no call is decided meanwhile
    release.set()
    seen = await asyncio.gather(*waiting)
    expected = old if new_text == BROKEN else live.snapshot
    assert expected is not None
    assert all(snapshot is expected for snapshot in seen)


async def test_look_now_looks_at_the_files_before_the_next_decision(
    policy_dir: Path, clock: FrozenClock
) -> None:
    """What `ztgate policy reload` asks of every gateway: no waiting for the interval."""
    write(policy_dir, ALLOW)
    live, _ = live_for(policy_dir, clock, check_interval=3600.0)
    first = await live.current()
    write(policy_dir, ALLOW + DENY_READS)
    assert await live.current() is first
    live.look_now()
    second = await live.current()
    assert second is not first and second is not None and "no-reads" in second.rules
