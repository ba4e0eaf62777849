"""`ztgate cluster up`: what it starts, what it prints, and that it always stops.

A real cluster runs in `tests/integration/test_cluster.py`; here `LocalCluster`
is replaced by a stand-in.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from ztgate import cluster

from .conftest import flat

Cli = Callable[..., Result]


class FakeCluster:
    made: list[FakeCluster] = []

    def __init__(self, workdir: Path, **options: Any) -> None:
        self.workdir = workdir
        self.options = options
        self.config = workdir / "ztgate.toml"
        self.url = f"http://127.0.0.1:{options['port']}"
        self.lines = ["replica-1  http://127.0.0.1:9001"]
        self.members: list[Any] = []
        self.stopped = False
        FakeCluster.made.append(self)

    def start(self) -> None:
        raise KeyboardInterrupt  # Ctrl-C as soon as it runs

    def stop(self) -> None:
        self.stopped = True


def test_up_starts_the_replicas_asked_and_stops_on_ctrl_c(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "LocalCluster", FakeCluster)
    FakeCluster.made.clear()
    result = cli(
        "cluster", "up", "--replicas", "2", "--port", "9000", "--replica-port", "9001",
        "--workdir", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (made,) = FakeCluster.made
    assert made.options == {"replicas": 2, "port": 9000, "replica_ports": [9001, 9002]}
    assert made.stopped
    assert "stopped" in flat(result.output)


def test_up_refuses_more_than_eight_replicas(cli: Cli) -> None:
    result = cli("cluster", "up", "--replicas", "9")
    assert result.exit_code == 2
