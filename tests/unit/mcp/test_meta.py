"""Reading ztgate's values from an MCP request's `_meta`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ztgate.mcp.meta import (
    APPROVAL,
    JUSTIFICATION,
    PROOF,
    WARRANT,
    CallMeta,
    MetaError,
    call_meta,
    read_meta,
)


def test_nothing_read_from_nothing() -> None:
    assert read_meta(None) == CallMeta()
    assert read_meta({}) == CallMeta()
    assert read_meta({"progressToken": 3, "other/key": [1]}) == CallMeta()


def test_what_an_agent_sends_is_what_is_read() -> None:
    meta = call_meta("w.a.s", "p.r.f", justification="the user asked", approval="01abc")
    assert read_meta(meta) == CallMeta("w.a.s", "p.r.f", "the user asked", "01abc")
    assert call_meta("w", "p") == {WARRANT: "w", PROOF: "p"}


@pytest.mark.parametrize("key", [WARRANT, PROOF, JUSTIFICATION, APPROVAL])
def test_a_value_that_is_not_a_string_is_refused(key: str) -> None:
    with pytest.raises(MetaError, match="must be a string"):
        read_meta({key: ["not", "a", "string"]})


def test_overlong_values_are_refused() -> None:
    with pytest.raises(MetaError, match="longer than 64"):
        read_meta({APPROVAL: "x" * 65})
    with pytest.raises(MetaError, match="longer than"):
        read_meta({WARRANT: "x" * 20000})


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=30) | st.integers(), max_size=6))
def test_any_meta_is_read_or_refused_cleanly(meta: dict[str, object]) -> None:
    try:
        found = read_meta(meta)
    except MetaError:
        return
    assert found.justification == meta.get(JUSTIFICATION, "")
