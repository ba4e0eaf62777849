"""Instances of a stdio MCP server per task: one enclave for each task and agent that calls it.

A server added with `--per-task` is not one process shared by every agent:
each task (and agent) that calls it gets an instance of its own, started on
its first call in an enclave attributed to that agent and task, held to the
task's domains and given the task's secrets (`ztgate.mcp.task_secrets`).
What one task's data does to the server cannot reach another task's calls,
and every connection the instance makes is on record as that task's.

An instance ends after `idle_seconds` without a call (its task over, or
quiet), when its server is removed or changed, and with the gateway. At
most `per_server` run for one server: past that the least recently used
instance with no call under way is stopped to make room; when every one is
busy, the call is refused (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from ztgate.errors import UpstreamError
from ztgate.guards.egress import task_domains
from ztgate.mcp.servers import McpServer

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TaskBinding:
    """Whom a call runs for: the agent and the task its warrant proved, and the warrant's scope."""

    agent: str
    task_id: str
    scope: Any = field(default=None, compare=False)

    def domains(self, server: str) -> tuple[str, ...] | None:
        """The domains the task allows the server's tools (their `domains` limits), or None."""
        tools = getattr(self.scope, "tools", None)
        if not isinstance(tools, Mapping):
            return None
        found: list[str] = []
        for name in tools:
            if isinstance(name, str) and name.startswith(f"{server}."):
                found.extend(task_domains(self.scope, name) or ())
        return tuple(dict.fromkeys(found)) if found else None


class Instance(Protocol):
    """What is kept of a running instance: it can be stopped."""

    async def stop(self) -> None:
        """Stop the instance (its process and its enclave)."""
        ...


InstanceT = TypeVar("InstanceT", bound=Instance)
Key = tuple[str, str, str]  # server, task, agent


@dataclass(slots=True)
class _Entry(Generic[InstanceT]):
    instance: InstanceT
    last_used: float
    busy: int = 0


class TaskInstances(Generic[InstanceT]):
    """The running per-task instances, by server, task and agent."""

    def __init__(
        self,
        start: Callable[[McpServer, TaskBinding], Awaitable[InstanceT]],
        *,
        per_server: int = 16,
        idle_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Instances are made by `start(server, binding)` (which raises `UpstreamError`)."""
        self._start = start
        self.per_server = per_server
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._running: dict[Key, _Entry[InstanceT]] = {}
        self._starting: dict[Key, asyncio.Future[_Entry[InstanceT]]] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def count(self, server: str | None = None) -> int:
        """How many instances run (of `server`, or of all)."""
        return sum(1 for key in self._running if server is None or key[0] == server)

    @contextlib.asynccontextmanager
    async def use(self, server: McpServer, binding: TaskBinding) -> AsyncIterator[InstanceT]:
        """The task's instance of `server` for one call (started if there is none).

        Raises:
            UpstreamError: it cannot be started, or the server's instances are all busy.
        """
        entry = await self._entry(server, binding)
        entry.busy += 1
        try:
            yield entry.instance
        finally:
            entry.busy -= 1
            entry.last_used = self._clock()

    async def _entry(self, server: McpServer, binding: TaskBinding) -> _Entry[InstanceT]:
        key = (server.name, binding.task_id, binding.agent)
        entry = self._running.get(key)
        if entry is not None:
            return entry
        starting = self._starting.get(key)
        if starting is None:
            async with self._lock:
                entry = self._running.get(key)
                if entry is not None:
                    return entry
                starting = self._starting.get(key)
                if starting is None:
                    await self._make_room(server.name)
                    starting = asyncio.get_running_loop().create_future()
                    self._starting[key] = starting
                    task = asyncio.create_task(self._started(key, server, binding, starting))
                    self._tasks.add(task)  # kept until done (the loop holds tasks weakly)
                    task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(starting)

    async def _started(
        self,
        key: Key,
        server: McpServer,
        binding: TaskBinding,
        starting: asyncio.Future[_Entry[InstanceT]],
    ) -> None:
        try:
            instance = await self._start(server, binding)
        except BaseException as exc:
            self._starting.pop(key, None)
            if not starting.done():
                error = exc if isinstance(exc, Exception) else UpstreamError("start cancelled")
                starting.set_exception(error)
                starting.exception()  # retrieved: each waiter raises it
            if not isinstance(exc, Exception):
                raise
            return
        entry = _Entry(instance, self._clock())
        self._running[key] = entry
        self._starting.pop(key, None)
        starting.set_result(entry)
        logger.info("MCP server %s: an instance started for task %s", key[0], key[1])

    async def _make_room(self, server: str) -> None:
        """Below `per_server` instances of `server` (starting ones included), or refuse."""
        ours = [key for key in (*self._running, *self._starting) if key[0] == server]
        if len(ours) < self.per_server:
            return
        idle = sorted(
            (entry.last_used, key)
            for key, entry in self._running.items()
            if key[0] == server and entry.busy == 0
        )
        if not idle:
            raise UpstreamError(
                f"MCP server {server}: {self.per_server} task instances are running, all busy"
            )
        await self._stop_key(idle[0][1], "to make room")

    async def reap(self) -> int:
        """Stop the instances idle for `idle_seconds`; how many were stopped."""
        cutoff = self._clock() - self.idle_seconds
        idle = [k for k, e in self._running.items() if e.busy == 0 and e.last_used <= cutoff]
        for key in idle:
            await self._stop_key(key, "idle")
        return len(idle)

    async def stop(self, server: str | None = None) -> None:
        """Stop the instances of `server` (None: all of them)."""
        for key in [k for k in self._running if server is None or k[0] == server]:
            await self._stop_key(key, "stopping")

    async def _stop_key(self, key: Key, why: str) -> None:
        entry = self._running.pop(key, None)
        if entry is None:
            return
        logger.info("MCP server %s: the instance for task %s stopped (%s)", key[0], key[1], why)
        with contextlib.suppress(Exception):
            await entry.instance.stop()
