"""The policy records: rule labels, the agents' entity cache, guard findings."""

from __future__ import annotations

import cedarpy
import pytest

from ztgate.policy import model
from ztgate.policy.model import GuardFacts, Rule

from .conftest import Load


def test_a_rule_is_labelled_by_id_and_location() -> None:
    named = Rule("reads", "a.cedar", 3, "permit", "permit (principal, action, resource);")
    assert (named.where, named.label) == ("a.cedar:3", "reads (a.cedar:3)")
    unnamed = Rule("a.cedar:9", "a.cedar", 9, "forbid", "")
    assert unnamed.label == "a.cedar:9"


def test_tainted_means_some_argument_is_tainted() -> None:
    assert not GuardFacts().tainted
    assert GuardFacts(tainted_arguments=("/to",)).tainted


def test_the_agent_cache_is_bounded(load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "AGENT_CACHE_SIZE", 2)
    snapshot = load("permit (principal, action, resource);")
    built: list[int] = []

    def build(n: int) -> cedarpy.Entities:
        built.append(n)
        return snapshot.entities

    for n in (1, 2, 1, 3, 1, 2):
        snapshot.with_agent((n,), lambda n=n: build(n))
    assert built == [1, 2, 3, 2]  # 2 was evicted by 3 (1 was used more recently)
    assert len(snapshot._agents) == 2
