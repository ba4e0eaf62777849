"""Per-task instances of stdio MCP servers: their bookkeeping and their calls.

`TaskInstances` with fake instances (starting, sharing, evicting, reaping),
and `McpUpstreams` with the SDK's own server started per task (the
enclave around it is tested against bubblewrap in
tests/integration/test_mcp_per_task.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ztgate.errors import InvalidInputError, UpstreamError
from ztgate.mcp.servers import McpServer
from ztgate.mcp.task_instances import TaskBinding, TaskInstances
from ztgate.mcp.upstream import McpUpstreams
from ztgate.tasks.scope import parse_scope
from ztgate.testing import make_call
from ztgate.tools.model import Tool

UPSTREAM = Path(__file__).parents[2] / "integration" / "mcp_upstream_server.py"
SERVER = McpServer(name="files", transport="stdio", command=sys.executable, per_task=True)
ALICE = TaskBinding("spiffe://ztgate.local/agents/alice", "task-a")
BOB = TaskBinding("spiffe://ztgate.local/agents/bob", "task-b")


# -- the server's description ------------------------------------------------------------


def test_only_a_stdio_server_runs_per_task_and_only_it_has_a_secrets_command() -> None:
    with pytest.raises(InvalidInputError, match="only a stdio server"):
        McpServer(name="r", transport="http", url="https://mcp.example/mcp", per_task=True)
    with pytest.raises(InvalidInputError, match="needs an instance per task"):
        McpServer(name="f", transport="stdio", command="/bin/true", secrets_command=("/bin/x",))
    with pytest.raises(InvalidInputError, match="absolute path"):
        dataclasses.replace(SERVER, secrets_command=("vault-secrets",))
    server = dataclasses.replace(SERVER, secrets_command=("/usr/local/bin/mint", "--ttl", "60"))
    assert McpServer.from_json(server.to_json()) == server
    assert "per_task" not in McpServer.from_json({**SERVER.to_json(), "per_task": False}).to_json()


def test_a_tasks_domains_are_its_scope_limits_on_the_servers_tools() -> None:
    scope = parse_scope(
        {
            "tools": {
                "files.fetch": {"limits": {"/url": {"domains": ["api.example.com"]}}},
                "files.send": {"limits": {"/to": {"domains": ["*.example.org"]}}},
                "other.fetch": {"limits": {"/url": {"domains": ["elsewhere.example"]}}},
                "files.notes": {},
            }
        }
    )
    task = TaskBinding(ALICE.agent, ALICE.task_id, scope)
    assert task.domains("files") == ("api.example.com", "*.example.org")
    assert task.domains("nothing") is None
    assert ALICE.domains("files") is None  # no scope: no list of the task's


# -- the bookkeeping ------------------------------------------------------------------------


class FakeInstance:
    def __init__(self, binding: TaskBinding) -> None:
        self.binding = binding
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True


class Starts:
    """Starts fake instances, slowly, counting them; fails for the tasks named in `failing`."""

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        self.started: list[FakeInstance] = []
        self.failing = failing

    async def __call__(self, server: McpServer, binding: TaskBinding) -> FakeInstance:
        await asyncio.sleep(0.01)
        if binding.task_id in self.failing:
            raise UpstreamError("the instance could not start")
        instance = FakeInstance(binding)
        self.started.append(instance)
        return instance


async def test_one_instance_per_task_and_agent_however_many_calls_arrive_at_once() -> None:
    starts = Starts()
    instances = TaskInstances(starts)

    async def use(binding: TaskBinding) -> FakeInstance:
        async with instances.use(SERVER, binding) as instance:
            return instance

    found = await asyncio.gather(*(use(b) for b in (ALICE, BOB, ALICE, ALICE, BOB)))
    assert len(starts.started) == 2 and instances.count("files") == 2
    assert found[0] is found[2] is found[3] and found[0].binding == ALICE
    assert found[1] is found[4] and found[1].binding == BOB
    # The same task for another agent (a sub-agent) is another instance.
    sub = TaskBinding("spiffe://ztgate.local/agents/sub", ALICE.task_id)
    assert await use(sub) is not found[0]


async def test_a_failed_start_fails_its_calls_and_is_not_kept() -> None:
    starts = Starts(failing=("task-a",))
    instances = TaskInstances(starts)
    for _ in range(2):  # tried again on the next call, not remembered as failed
        with pytest.raises(UpstreamError, match="could not start"):
            async with instances.use(SERVER, ALICE):
                pass
    assert instances.count() == 0


async def test_past_the_limit_the_least_recently_used_idle_instance_makes_room() -> None:
    now = [0.0]
    starts = Starts()
    instances = TaskInstances(starts, per_server=2, clock=lambda: now[0])
    for binding in (ALICE, BOB):
        now[0] += 1
        async with instances.use(SERVER, binding):
            pass
    carol = TaskBinding("spiffe://ztgate.local/agents/carol", "task-c")
    async with instances.use(SERVER, carol):
        pass
    assert starts.started[0].stopped and not starts.started[1].stopped  # Alice's was older
    assert instances.count("files") == 2


async def test_when_every_instance_is_busy_a_new_task_is_refused() -> None:
    instances = TaskInstances(Starts(), per_server=1)
    async with instances.use(SERVER, ALICE):
        with pytest.raises(UpstreamError, match="all busy"):
            async with instances.use(SERVER, BOB):
                pass


async def test_idle_instances_are_reaped_and_busy_ones_kept() -> None:
    now = [0.0]
    starts = Starts()
    instances = TaskInstances(starts, idle_seconds=10, clock=lambda: now[0])
    async with instances.use(SERVER, ALICE):
        pass
    async with instances.use(SERVER, BOB):
        now[0] = 11
        assert await instances.reap() == 1  # Alice's; Bob's is in a call
    assert starts.started[0].stopped and not starts.started[1].stopped
    await instances.stop("files")
    assert starts.started[1].stopped and instances.count() == 0


class Gate:
    """Starts that wait until let go (and note what they made)."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.started: list[FakeInstance] = []

    async def __call__(self, server: McpServer, binding: TaskBinding) -> FakeInstance:
        await self.go.wait()
        instance = FakeInstance(binding)
        self.started.append(instance)
        return instance


async def _once(instances: TaskInstances[Any], server: McpServer, binding: TaskBinding) -> Any:
    async with instances.use(server, binding) as instance:
        return instance


async def test_a_start_under_way_when_its_server_changes_is_stopped_not_kept() -> None:
    gate = Gate()
    instances = TaskInstances(gate)
    waiting = asyncio.create_task(_once(instances, SERVER, ALICE))
    await asyncio.sleep(0.01)
    await instances.stop("files")  # `mcp add --replace` or `remove` while it starts
    gate.go.set()
    with pytest.raises(UpstreamError, match="changed or stopped"):
        await waiting
    assert gate.started[0].stopped and instances.count() == 0


async def test_an_instance_of_a_changed_server_is_replaced_on_the_next_call() -> None:
    instances = TaskInstances(Starts())
    old = await _once(instances, SERVER, ALICE)
    changed = dataclasses.replace(SERVER, args=("--new",))
    new = await _once(instances, changed, ALICE)
    assert new is not old and old.stopped and instances.count() == 1


async def test_a_dead_instance_is_replaced_on_the_next_call() -> None:
    dead: set[int] = set()
    instances = TaskInstances(Starts(), alive=lambda instance: id(instance) not in dead)
    first = await _once(instances, SERVER, ALICE)
    dead.add(id(first))
    second = await _once(instances, SERVER, ALICE)
    assert second is not first and first.stopped


async def test_a_narrower_warrant_of_the_same_task_is_another_instance() -> None:
    wide = parse_scope({"tools": {"files.fetch": {}}})
    limits = {"/url": {"domains": ["api.example.com"]}}
    narrow = parse_scope({"tools": {"files.fetch": {"limits": limits}}})
    instances = TaskInstances(Starts())
    one = await _once(instances, SERVER, TaskBinding(ALICE.agent, ALICE.task_id, wide))
    two = await _once(instances, SERVER, TaskBinding(ALICE.agent, ALICE.task_id, narrow))
    assert one is not two and instances.count() == 2


async def test_stopping_for_good_stops_the_starts_under_way() -> None:
    gate = Gate()
    instances = TaskInstances(gate)
    waiting = asyncio.create_task(_once(instances, SERVER, ALICE))
    await asyncio.sleep(0.01)
    await instances.stop()
    with pytest.raises(UpstreamError):
        await waiting
    assert instances.count() == 0 and not gate.started  # cancelled before it made one
    with pytest.raises(UpstreamError, match="stopping"):
        await _once(instances, SERVER, BOB)


async def test_only_the_servers_current_description_is_ever_used() -> None:
    current = {"files": SERVER}
    starts = Starts()
    instances = TaskInstances(starts, current=current.get)
    old = await _once(instances, SERVER, ALICE)
    changed = dataclasses.replace(SERVER, args=("--new",))
    current["files"] = changed  # as `reconcile` does, before it stops anything
    # A call that read the server before the change still gets the changed one.
    new = await _once(instances, SERVER, ALICE)
    assert old.stopped and new is not old and instances.count() == 1
    del current["files"]  # removed
    with pytest.raises(UpstreamError, match="not served"):
        await _once(instances, changed, ALICE)


async def test_a_start_of_an_old_description_is_not_joined_nor_kept() -> None:
    current = {"files": SERVER}
    gate = Gate()
    instances = TaskInstances(gate, current=current.get)
    early = asyncio.create_task(_once(instances, SERVER, ALICE))
    await asyncio.sleep(0.01)
    changed = dataclasses.replace(SERVER, args=("--new",))
    current["files"] = changed
    late = asyncio.create_task(_once(instances, changed, ALICE))
    await asyncio.sleep(0.01)
    gate.go.set()
    with pytest.raises(UpstreamError, match="changed or stopped"):
        await early
    made = await late
    assert instances.count() == 1 and not made.stopped
    assert [i.stopped for i in gate.started].count(True) == 1  # the old one, as it came up


async def test_a_start_cancelled_before_its_first_step_fails_its_call() -> None:
    instances = TaskInstances(Gate())
    waiting = asyncio.create_task(_once(instances, SERVER, ALICE))
    await asyncio.sleep(0)  # the call made its start task, which has not run yet
    await instances.stop()
    with pytest.raises(UpstreamError):
        await asyncio.wait_for(waiting, 2)  # settled, not left hanging


class SlowToStop(FakeInstance):
    async def stop(self) -> None:
        await asyncio.sleep(1)
        self.stopped = True


async def test_an_instance_slow_to_stop_holds_up_no_other_task() -> None:
    dead: set[int] = set()

    async def start(server: McpServer, binding: TaskBinding) -> FakeInstance:
        return SlowToStop(binding)

    instances = TaskInstances(start, alive=lambda instance: id(instance) not in dead)
    first = await _once(instances, SERVER, ALICE)
    dead.add(id(first))
    replacing = asyncio.create_task(_once(instances, SERVER, ALICE))  # stops the dead one
    await asyncio.sleep(0.05)
    began = asyncio.get_running_loop().time()
    await _once(instances, dataclasses.replace(SERVER, name="other"), BOB)
    assert asyncio.get_running_loop().time() - began < 0.5
    await replacing


def test_a_per_task_server_cannot_share_writable_paths() -> None:
    with pytest.raises(InvalidInputError, match="writable paths"):
        dataclasses.replace(SERVER, read_write_paths=("/srv/shared",))


# -- calls, through McpUpstreams, to the SDK's server started per task ----------------------


@contextlib.asynccontextmanager
async def per_task_upstreams() -> AsyncIterator[tuple[McpUpstreams, dict[str, Tool], list[Any]]]:
    imported: list[Tool] = []
    enclaves: list[Any] = []

    async def enclave(server: McpServer, _stack: Any, task: TaskBinding | None = None) -> Any:
        enclaves.append(task)  # the catalog's session (None), then each task's instance
        return SimpleNamespace(command=server.command, args=server.args, env={})

    server = dataclasses.replace(SERVER, args=(str(UPSTREAM),))
    upstreams = McpUpstreams(
        [server],
        sync=lambda _server, tools: imported.extend(tools),
        enclave=enclave,
        max_result_bytes=1_048_576,
    )
    await upstreams.start()
    try:
        yield upstreams, {tool.name: tool for tool in imported}, enclaves
    finally:
        await upstreams.stop()


async def test_each_task_calls_its_own_instance_and_none_without_a_task() -> None:
    async with per_task_upstreams() as (upstreams, tools, enclaves):
        send = tools["files.send"]
        call = make_call("files.send", {"to": "bob", "text": "hi"})
        with pytest.raises(UpstreamError, match="a call without a task cannot reach it"):
            await upstreams.call(send, call)
        for binding in (ALICE, BOB, ALICE):
            result = await upstreams.call(send, call, binding)
            assert result.body == {"sent": {"to": "bob", "text": "hi"}}
        assert enclaves == [None, ALICE, BOB]  # the catalog's, then one per task
        assert upstreams.task_instances.count("files") == 2
    assert upstreams.task_instances.count() == 0  # stopped with the upstreams


async def test_an_instance_that_describes_a_tool_otherwise_is_refused() -> None:
    async with per_task_upstreams() as (upstreams, tools, _):
        approved = tools["files.archive"]
        changed = dataclasses.replace(approved, description="Archive a message, now.")
        call = make_call("files.archive", {})
        with pytest.raises(UpstreamError, match="otherwise than the tool approved"):
            await upstreams.call(changed, call, ALICE)
        assert (await upstreams.call(approved, call, ALICE)).status == 200
