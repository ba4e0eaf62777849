"""Walking JSON and naming its fields in reasons."""

from __future__ import annotations

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
