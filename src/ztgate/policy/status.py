"""What the gateway reports about its policies: a log line, metrics and a status file.

Every load and every rejected reload is logged, counted
(`ztgate_policy_reloads_total{result}`; `ztgate_policy_in_sync` is 0 while
the files on disk were rejected and an older set is in force;
`ztgate_policy_policies` counts the policies in force) and written to
`<data_dir>/policy-status.json`, which `ztgate policy status` reads.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from ztgate.clock import Clock
from ztgate.policy.model import PolicySnapshot

logger = logging.getLogger(__name__)
STATUS_FILE = "policy-status.json"


class Reporter:
    """Logs, counts and records each policy load and rejection."""

    def __init__(
        self, clock: Clock, path: Path | None = None, registry: CollectorRegistry | None = None
    ) -> None:
        """Write the status to `path` (if given); register metrics in `registry` (if given)."""
        self._clock = clock
        self._path = path
        self._in_force: dict[str, Any] | None = None
        self._reloads: Counter | None = None
        self._in_sync: Gauge | None = None
        self._policies: Gauge | None = None
        if registry is not None:
            self._reloads = Counter(
                "ztgate_policy_reloads",
                "Policy set loads, by result (loaded, rejected).",
                ("result",),
                registry=registry,
            )
            self._in_sync = Gauge(
                "ztgate_policy_in_sync",
                "1 when the policy files on disk are the set in force, 0 after a rejected edit.",
                registry=registry,
            )
            self._policies = Gauge(
                "ztgate_policy_policies", "Policies in the set in force.", registry=registry
            )

    def loaded(self, snapshot: PolicySnapshot, *, first: bool = False) -> None:
        """A set was loaded and is now in force."""
        self._in_force = {
            "source": snapshot.source,
            "version": snapshot.version,
            "digest": snapshot.digest,
            "policies": len(snapshot.rules),
            "files": list(snapshot.files),
            "warnings": list(snapshot.warnings),
            "loaded_at": self._clock.now(),
        }
        verb = "loaded" if first else "reloaded"
        logger.info(
            "policies %s: %d policies from %s (version %s)",
            verb,
            len(snapshot.rules),
            snapshot.source,
            snapshot.version,
        )
        for warning in snapshot.warnings:
            logger.warning("policy: %s", warning)
        if self._reloads is not None and self._in_sync is not None and self._policies is not None:
            self._reloads.labels("loaded").inc()
            self._in_sync.set(1)
            self._policies.set(len(snapshot.rules))
        self._write(ok=True, problems=[])

    def rejected(self, problems: list[str], in_force: PolicySnapshot | None) -> None:
        """An edit was refused; `in_force` (if any) goes on deciding."""
        kept = f"version {in_force.version} stays in force" if in_force else "no set is in force"
        logger.error("policy reload rejected (%s): %s", kept, "; ".join(problems))
        if self._reloads is not None and self._in_sync is not None:
            self._reloads.labels("rejected").inc()
            self._in_sync.set(0)
        self._write(ok=False, problems=problems)

    def _write(self, *, ok: bool, problems: list[str]) -> None:
        if self._path is None:
            return
        status = {
            "pid": os.getpid(),
            "in_force": self._in_force,
            "last_attempt": {"at": self._clock.now(), "ok": ok, "problems": problems},
        }
        try:
            write_atomically(self._path, json.dumps(status, indent=2) + "\n")
        except OSError as exc:
            logger.warning("cannot write the policy status file %s: %s", self._path, exc)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename, so that readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_status(path: Path) -> dict[str, Any] | None:
    """The status a gateway last wrote, or None if there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
