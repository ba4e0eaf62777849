"""The policy set in force, reloaded atomically when its files or the tools change.

Before each evaluation the check asks `current()`. That stats the policy
directory, its subdirectories and its files (a few microseconds for the
default set; at most every `check_interval` seconds) and compares the
registered tools with those the set was validated for. When either changed,
a reload waits until the files have stayed unchanged for a moment (an
editor writing in place leaves a file half-written for a while), reads and
validates everything in a worker thread (again if the files changed while
they were read), and the calls meanwhile wait for it; then:

- if the new set loads, it replaces the old one in a single assignment, so a
  call is decided by one whole set, old or new, never a mixture;
- if it does not, the old set stays in force, the rejection is reported
  (log, metric, status file), and the same files are not tried again until
  they change.

No call is ever decided without a set: before the first load succeeds there
is none, and the check denies.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from ztgate.clock import Clock
from ztgate.errors import PolicyLoadError
from ztgate.policy import loader
from ztgate.policy.model import PolicySnapshot
from ztgate.policy.status import Reporter
from ztgate.tools.model import Tool

logger = logging.getLogger(__name__)
Stat = tuple[str, int, int, int, int] | tuple[str]
DEFAULT_SETTLE = 0.05  # seconds a changed directory must stay unchanged before it is read
# Bumped by `ztgate policy reload`: every gateway on the store looks at its files at once.
GENERATION = "policy"


class Watch:
    """The state of a policy directory's files, cheap to compare between calls."""

    def __init__(self, directory: Path) -> None:
        """Nothing is read until `signature()`."""
        self.directory = directory
        self._dirs: list[str] = [str(directory)]
        self._dir_stats: tuple[Stat, ...] = ()
        self._files: list[str] = []

    def signature(self) -> tuple[Stat, ...]:
        """The directories' and files' stats: any edit, addition or removal changes it.

        A file added or removed changes its directory's stat; only then is
        the directory listed again.
        """
        dirs = tuple(map(_stat, self._dirs))
        if dirs != self._dir_stats:
            self._dirs = [str(path) for path in (self.directory, *self._subdirs())]
            self._files = [str(path) for path in self._list()]
            dirs = self._dir_stats = tuple(map(_stat, self._dirs))
        return dirs + tuple(map(_stat, self._files))

    def _subdirs(self) -> list[Path]:
        found: list[Path] = []
        for root, dirs, _ in os.walk(self.directory):
            dirs[:] = sorted(name for name in dirs if not name.startswith("."))
            found.extend(Path(root) / name for name in dirs)
        return found

    def _list(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        tags = self.directory / loader.TAGS_FILE
        return [*loader.policy_files(self.directory), *([tags] if tags.exists() else [])]


def _stat(path: str) -> Stat:
    try:
        st = os.stat(path)
    except OSError:
        return (path,)
    return (path, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


@dataclass(frozen=True, slots=True)
class _Inputs:
    signature: tuple[Stat, ...]
    tools: object  # the tools' identity: a new catalog is a new object


class LivePolicies:
    """The policy set in force for one gateway process."""

    def __init__(
        self,
        directory: Path,
        clock: Clock,
        *,
        status_path: Path | None = None,
        check_interval: float = 0.0,
        settle: float = DEFAULT_SETTLE,
        load: Callable[[Path, Sequence[Tool]], PolicySnapshot] | None = None,
    ) -> None:
        """Watch `directory` (the built-in set while it does not exist).

        The status goes to `status_path` (see `status`); the directory is
        looked at no more often than every `check_interval` seconds, and
        read once its files have not changed for `settle` seconds.
        """
        self.directory = directory
        self.snapshot: PolicySnapshot | None = None
        self.last_problems: list[str] = []
        self._clock = clock
        self._status_path = status_path
        self._reporter = Reporter(clock, status_path)
        self._interval = check_interval
        self._settle = settle
        self._started = False
        self._load = load or _load
        self._watch = Watch(directory)
        self._catalog: Callable[[], object] = lambda: None
        self._tools: Callable[[object], Sequence[Tool]] = lambda catalog: ()
        self._attempted: _Inputs | None = None
        self._checked_at = float("-inf")
        self._reloading: asyncio.Task[None] | None = None

    def start(
        self,
        catalog: Callable[[], object],
        tools: Callable[[object], Sequence[Tool]],
        registry: CollectorRegistry | None = None,
    ) -> PolicySnapshot:
        """Load the set now, reporting to the metrics `registry` from now on.

        `catalog()` is called on every call: a new object means the tools
        changed, and `tools(catalog)` lists them.

        Raises:
            PolicyLoadError: the policies do not load (nothing is in force).
        """
        self._catalog, self._tools = catalog, tools
        self._started = True
        self._reporter = Reporter(self._clock, self._status_path, registry)
        inputs = self._inputs()
        self._attempted = inputs
        try:
            snapshot = self._load(self.directory, tools(inputs.tools))
        except PolicyLoadError as exc:
            self.last_problems = exc.problems
            self._reporter.rejected(exc.problems, None)
            raise
        self.snapshot = snapshot
        self._reporter.loaded(snapshot, first=True)
        return snapshot

    async def current(self) -> PolicySnapshot | None:
        """The set in force, reloaded first if the files or the tools changed."""
        if self._reloading is None and self._started:
            now = self._clock.monotonic()
            if now - self._checked_at >= self._interval:
                self._checked_at = now
                inputs = self._inputs()
                if inputs != self._attempted:
                    self._attempted = inputs
                    self._reloading = asyncio.get_running_loop().create_task(self._reload(inputs))
        if self._reloading is not None:
            await asyncio.shield(self._reloading)
        return self.snapshot

    def look_now(self) -> None:
        """Look at the files before the next decision, whatever `check_interval` says."""
        self._checked_at = float("-inf")

    def _inputs(self) -> _Inputs:
        return _Inputs(self._watch.signature(), self._catalog())

    async def _reload(self, inputs: _Inputs) -> None:
        try:
            while True:
                inputs = await self._settled(inputs)
                outcome: Any = await asyncio.to_thread(self._try_load, self._tools(inputs.tools))
                after = self._inputs()
                if after == inputs:
                    break
                inputs = after  # changed while being read: what was read may be torn
            self._attempted = inputs
            if isinstance(outcome, PolicySnapshot):
                self.snapshot = outcome  # one assignment: calls see the old set or the new one
                self.last_problems = []
                self._reporter.loaded(outcome)
            else:
                self.last_problems = outcome
                self._reporter.rejected(outcome, self.snapshot)
        finally:
            self._reloading = None

    async def _settled(self, inputs: _Inputs) -> _Inputs:
        """`inputs` once the files have not changed for `settle` seconds.

        An editor that truncates a file and then writes it leaves it empty or
        half-written for a moment; a set read then could lack a forbid.
        """
        while True:
            await asyncio.sleep(self._settle)
            now = self._inputs()
            if now == inputs:
                return inputs
            inputs = now

    def _try_load(self, tools: Sequence[Tool]) -> PolicySnapshot | list[str]:
        try:
            return self._load(self.directory, tools)
        except PolicyLoadError as exc:
            return exc.problems
        except BaseException as exc:  # a bug or an engine panic: keep the old set
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            logger.exception("policy reload failed")
            return [f"the policy set could not be loaded: {type(exc).__name__}"]


def _load(directory: Path, tools: Sequence[Tool]) -> PolicySnapshot:
    return loader.load(loader.read(directory), tools)
