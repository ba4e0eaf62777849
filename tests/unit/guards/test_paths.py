"""Walking JSON and naming its fields in reasons."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ztgate.guards.paths import leaves, pointer, shown


def test_leaves_walk_in_document_order() -> None:
    document = {"a": [1, {"b": "x"}], "c/d": None, "e~f": True}
    assert list(leaves(document)) == [
        (("a", "0"), 1),
        (("a", "1", "b"), "x"),
        (("c/d",), None),
        (("e~f",), True),
    ]
    assert list(leaves("scalar")) == [((), "scalar")]
    assert list(leaves({})) == []


def test_pointers_escape_per_rfc_6901() -> None:
    assert pointer(("a", "0", "b")) == "/a/0/b"
    assert pointer(("c/d", "e~f")) == "/c~1d/e~0f"
    assert pointer(()) == ""


def test_shown_pointers_are_short_and_never_secret() -> None:
    assert shown("/to") == "/to"
    assert len(shown("/" + "x" * 500)) == 64
    assert shown("/AKIAIOSFODNN7EXAMPLE") == "[REDACTED]"


def _leaves_as_before(document: Any) -> Iterator[tuple[tuple[str, ...], Any]]:
    stack: list[tuple[tuple[str, ...], Any]] = [((), document)]
    while stack:
        where, value = stack.pop()
        kind = type(value)
        if kind is str or kind is int or kind is float or value is None or kind is bool:
            yield where, value
        elif kind is dict or isinstance(value, Mapping):
            stack.extend(((*where, str(k)), v) for k, v in reversed(list(value.items())))
        elif kind is list or isinstance(value, list | tuple):
            stack.extend(((*where, str(i)), v) for i, v in reversed(list(enumerate(value))))
        else:
            yield where, value


_KEYS = st.text(max_size=3) | st.integers(-3, 3) | st.sampled_from([None, True, 1.5])
_DOCUMENTS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(_KEYS, inner, max_size=4)
        | st.dictionaries(st.text(max_size=2), inner, max_size=3).map(MappingProxyType)
    ),
    max_leaves=20,
)


@given(_DOCUMENTS)
def test_leaves_are_walked_as_before(document: Any) -> None:
    assert list(leaves(document)) == list(_leaves_as_before(document))
