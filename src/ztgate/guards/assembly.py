"""The provenance, DLP, egress, justification, judge and pinning guards of one gateway, assembled.

Built from `[guards]` in the settings over the gateway's hot state:

- pre-call, after the schema and containment checks and before policy:
  `pinning`, `provenance`, `dlp`, `egress`, and `intent` (when the judge
  is enabled) — each can be switched off;
- the `justification` check gets the task ledger, so that it can refuse a
  justification copied from a tool result;
- after the call: `provenance_record`, which records the result's values
  for the task.

Tasks are read through the registry the warrants use (`use_tasks`); with
authentication off there are no tasks, and the per-task guards have
nothing to go on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from ztgate.config import Settings
from ztgate.errors import NotFoundError
from ztgate.guards.dlp import OutboundDlpCheck
from ztgate.guards.egress import EgressCheck
from ztgate.guards.judge import ChatJudge, IntentCheck, Judge
from ztgate.guards.justification import JustificationCheck
from ztgate.guards.ledger import Ledger
from ztgate.guards.pinning import PinningCheck
from ztgate.guards.provenance import ProvenanceCheck, ProvenanceRecorder
from ztgate.guards.resolver import Resolver, SystemResolver
from ztgate.guards.taskinfo import TaskInfo, TaskInfoCache
from ztgate.pipeline import Check, ResultCheck
from ztgate.store.hot import HotState


class Guards:
    """The guards the settings ask for, sharing one task ledger."""

    def __init__(
        self,
        settings: Settings,
        hot: HotState,
        *,
        resolver: Resolver | None = None,
        judge: Judge | None = None,
    ) -> None:
        """Assemble from `settings`; `resolver` and `judge` replace the configured ones."""
        self.settings = settings.guards
        provenance = self.settings.provenance
        self.ledger = Ledger(
            hot,
            max_entries=provenance.max_values_per_task,
            ttl_cap=float(provenance.ttl_seconds),
        )
        self.tasks = TaskInfoCache(self._load)
        self._source: Callable[[str], Any] | None = None
        egress = self.settings.egress
        if resolver is None and egress.resolve:
            resolver = SystemResolver(
                timeout=egress.resolve_timeout_seconds, cache_seconds=egress.resolve_cache_seconds
            )
        self.resolver = resolver
        configured = self.settings.judge
        if judge is None and configured.enabled:
            judge = ChatJudge(
                configured.url,
                model=configured.model,
                timeout=configured.timeout_seconds,
                api_key=os.environ.get(configured.api_key_env) or None,
            )
        self.judge = judge if configured.enabled or judge is not None else None

    def use_tasks(self, get: Callable[[str], Any]) -> None:
        """Read tasks with `get(task_id)` (a `Task`; raises `NotFoundError` if unknown)."""
        self._source = get

    def _load(self, task_id: str) -> TaskInfo | None:
        if self._source is None:
            return None
        try:
            task = self._source(task_id)
        except NotFoundError:
            return None
        return TaskInfo(task.id, task.intent, float(task.expires_at))

    def justification(self, tiers: Iterable[str]) -> JustificationCheck:
        """The `justification` check, refusing copied justifications if so configured."""
        ledger = self.ledger if self.settings.justification_not_copied else None
        return JustificationCheck(tiers, ledger=ledger)

    def checks(self) -> list[Check]:
        """The pre-call guards, in order."""
        chosen: list[Check] = []
        if self.settings.pinning:
            chosen.append(PinningCheck())
        if self.settings.provenance.enabled:
            chosen.append(ProvenanceCheck(self.ledger, self.tasks))
        if self.settings.dlp:
            chosen.append(OutboundDlpCheck())
        egress = self.settings.egress
        if egress.enabled:
            chosen.append(
                EgressCheck(
                    self.resolver,
                    allowed_domains=egress.allowed_domains,
                    agent_domains=egress.agent_domains,
                )
            )
        if self.judge is not None:
            chosen.append(IntentCheck(self.judge, self.tasks, tiers=self.settings.judge.tiers))
        return chosen

    def result_checks(self) -> list[ResultCheck]:
        """The post-call guards, in order."""
        provenance = self.settings.provenance
        if not provenance.enabled:
            return []
        return [ProvenanceRecorder(self.ledger, self.tasks, max_chars=provenance.max_result_chars)]

    async def stop(self) -> None:
        """Close the judge's HTTP client."""
        close = getattr(self.judge, "aclose", None)
        if close is not None:
            await close()
