from __future__ import annotations

from ztgate.guards import facts


def test_fact_names_are_distinct_and_namespaced() -> None:
    names = [v for k, v in vars(facts).items() if k.isupper()]
    assert len(names) == len(set(names))
    assert all(name.startswith("guards.") for name in names)
