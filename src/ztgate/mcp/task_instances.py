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
import functools
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
# Server, task, agent, and the task's domains for the server (a narrower
# warrant of the same agent and task is another instance).
Key = tuple[str, str, str, tuple[str, ...] | None]


@dataclass(slots=True)
class _Entry(Generic[InstanceT]):
    instance: InstanceT
    server: McpServer  # as it was when the instance started
    last_used: float
    busy: int = 0
    stopped: bool = False


class TaskInstances(Generic[InstanceT]):
    """The running per-task instances, by server, task and agent.

    Instances are stopped outside the lock (a server slow to stop delays no
    other task), and only ever of the server's current description: a call,
    a start under way and a running instance are each checked against it.
    """

    def __init__(
        self,
        start: Callable[[McpServer, TaskBinding], Awaitable[InstanceT]],
        *,
        per_server: int = 16,
        idle_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        alive: Callable[[InstanceT], bool] = lambda _instance: True,
        current: Callable[[str], McpServer | None] | None = None,
    ) -> None:
        """Instances are made by `start(server, binding)` (which raises `UpstreamError`);
        one that is not `alive` (its process died) is replaced on its task's next call;
        `current(name)` is the server's description now (None: removed; no `current`: the
        description each call brings)."""
        self._start = start
        self.per_server = per_server
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._alive = alive
        self._current_of = current
        self._running: dict[Key, _Entry[InstanceT]] = {}
        self._starting: dict[Key, tuple[McpServer, asyncio.Future[_Entry[InstanceT]]]] = {}
        # Bumped when a server's instances are stopped: a start under way then
        # stops what it started instead of keeping it.
        self._epochs: dict[str, int] = {}
        self._closed = False
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def count(self, server: str | None = None) -> int:
        """How many instances run (of `server`, or of all)."""
        return sum(1 for key in self._running if server is None or key[0] == server)

    @contextlib.asynccontextmanager
    async def use(self, server: McpServer, binding: TaskBinding) -> AsyncIterator[InstanceT]:
        """The task's instance of `server` for one call (started if there is none).

        Raises:
            UpstreamError: it cannot be started, the server's instances are all busy,
                or the server is no longer served.
        """
        key = (server.name, binding.task_id, binding.agent, binding.domains(server.name))
        entry = await self._entry(key, server, binding)
        if not self._usable(entry):  # stopped or replaced before it could be used
            entry = await self._entry(key, server, binding)
            if not self._usable(entry):
                raise UpstreamError(f"MCP server {server.name}: the task's instance stopped")
        entry.busy += 1
        try:
            yield entry.instance
        finally:
            entry.busy -= 1
            entry.last_used = self._clock()

    def _spec(self, server: McpServer) -> McpServer:
        """The server's description now.

        Raises:
            UpstreamError: it is no longer served.
        """
        if self._current_of is None:
            return server
        found = self._current_of(server.name)
        if found is None:
            raise UpstreamError(f"MCP server {server.name} is not served")
        return found

    def _usable(self, entry: _Entry[InstanceT]) -> bool:
        if entry.stopped or not self._alive(entry.instance):
            return False
        return self._current_of is None or self._current_of(entry.server.name) == entry.server

    async def _entry(self, key: Key, server: McpServer, binding: TaskBinding) -> _Entry[InstanceT]:
        entry = self._running.get(key)
        if entry is not None and entry.server == self._spec(server) and self._usable(entry):
            return entry
        retired: list[tuple[Key, _Entry[InstanceT], str]] = []
        try:
            async with self._lock:
                if self._closed:
                    raise UpstreamError(f"MCP server {server.name}: the gateway is stopping")
                server = self._spec(server)  # read again: the lock may have been a wait
                entry = self._running.get(key)
                if entry is not None:
                    if entry.server == server and self._usable(entry):
                        return entry
                    why = "its server changed" if entry.server != server else "it died"
                    retired.append((key, self._take(key), why))
                pending = self._starting.get(key)
                if pending is None or pending[0] != server:  # never join a start of another spec
                    victim = self._room(server.name)
                    if victim is not None:
                        retired.append((*victim, "to make room"))
                    started = asyncio.get_running_loop().create_future()
                    pending = self._starting[key] = (server, started)
                    epoch = self._epochs.get(server.name, 0)
                    task = asyncio.create_task(self._started(key, server, binding, started, epoch))
                    self._tasks.add(task)  # kept until done (the loop holds tasks weakly)
                    task.add_done_callback(self._tasks.discard)
                    # Settled even if cancelled before its first step (nothing started then).
                    task.add_done_callback(functools.partial(self._cancelled, key, started))
        finally:
            for old_key, old, why in retired:  # outside the lock
                await self._stop_entry(old_key, old, why)
        return await asyncio.shield(pending[1])

    async def _started(
        self,
        key: Key,
        server: McpServer,
        binding: TaskBinding,
        starting: asyncio.Future[_Entry[InstanceT]],
        epoch: int,
    ) -> None:
        try:
            instance = await self._start(server, binding)
        except BaseException as exc:
            self._settle(key, starting, exc)
            if not isinstance(exc, Exception):
                raise
            return
        current = server if self._current_of is None else self._current_of(server.name)
        if self._closed or self._epochs.get(key[0], 0) != epoch or current != server:
            self._settle(key, starting, UpstreamError(f"MCP server {key[0]} changed or stopped"))
            with contextlib.suppress(Exception):
                await instance.stop()
            return
        entry = _Entry(instance, server, self._clock())
        superseded = self._running.get(key)
        self._running[key] = entry
        self._settle(key, starting, entry)
        logger.info("MCP server %s: an instance started for task %s", key[0], key[1])
        if superseded is not None:  # pragma: no cover - one start per key and spec at a time
            superseded.stopped = True
            await self._stop_entry(key, superseded, "superseded")

    def _cancelled(
        self, key: Key, starting: asyncio.Future[_Entry[InstanceT]], _task: object
    ) -> None:
        self._settle(key, starting, UpstreamError("the instance's start was cancelled"))

    def _settle(
        self,
        key: Key,
        starting: asyncio.Future[_Entry[InstanceT]],
        outcome: _Entry[InstanceT] | BaseException,
    ) -> None:
        pending = self._starting.get(key)
        if pending is not None and pending[1] is starting:
            del self._starting[key]
        if starting.done():
            return
        if isinstance(outcome, _Entry):
            starting.set_result(outcome)
            return
        error = outcome if isinstance(outcome, Exception) else UpstreamError("start cancelled")
        starting.set_exception(error)
        starting.exception()  # retrieved: each waiter raises it

    def _room(self, server: str) -> tuple[Key, _Entry[InstanceT]] | None:
        """Room for one more instance of `server`: the LRU idle one taken out, if need be.

        Raises:
            UpstreamError: `per_server` run or start already, none of them idle.
        """
        ours = [key for key in (*self._running, *self._starting) if key[0] == server]
        if len(ours) < self.per_server:
            return None
        idle = sorted(
            (entry.last_used, key)
            for key, entry in self._running.items()
            if key[0] == server and entry.busy == 0
        )
        if not idle:
            raise UpstreamError(
                f"MCP server {server}: {self.per_server} task instances are running, all busy"
            )
        key = idle[0][1]
        return key, self._take(key)

    async def reap(self) -> int:
        """Stop the instances idle for `idle_seconds`; how many were stopped."""
        cutoff = self._clock() - self.idle_seconds
        # Chosen and taken out at once (no call can start on them after), then stopped.
        idle = [k for k, e in self._running.items() if e.busy == 0 and e.last_used <= cutoff]
        taken = [(key, self._take(key)) for key in idle]
        for key, entry in taken:
            await self._stop_entry(key, entry, "idle")
        return len(taken)

    async def stop(self, server: str | None = None) -> None:
        """Stop the instances of `server` (None: all of them, for good), and its starts."""
        names = {key[0] for key in (*self._running, *self._starting)}
        if server is None:
            self._closed = True
        for name in names if server is None else {server}:
            self._epochs[name] = self._epochs.get(name, 0) + 1
        # Starts under way stop what they make (the epoch moved), and settle their waiters.
        taken = [
            (key, self._take(key))
            for key in [k for k in self._running if server is None or k[0] == server]
        ]
        for key, entry in taken:
            await self._stop_entry(key, entry, "stopping")
        if server is None and self._tasks:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _take(self, key: Key) -> _Entry[InstanceT]:
        entry = self._running.pop(key)
        entry.stopped = True
        return entry

    async def _stop_entry(self, key: Key, entry: _Entry[InstanceT], why: str) -> None:
        logger.info("MCP server %s: the instance for task %s stopped (%s)", key[0], key[1], why)
        with contextlib.suppress(Exception):
            await entry.instance.stop()
