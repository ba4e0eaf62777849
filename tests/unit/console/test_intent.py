"""The diff between a call's argument values and what its task's intent names."""

from __future__ import annotations

import pytest

from ztgate.audit.redact import preview
from ztgate.console.intent import ABSENT, HIDDEN, NAMED, compare

INTENT = "Pay the ACME invoice of 100 euros to billing@acme.example, reference INV-7"


def _statuses(arguments: dict[str, object]) -> dict[str, str]:
    return {m.path: m.status for m in compare(preview(arguments), INTENT)}


def test_values_the_intent_names_and_values_it_does_not() -> None:
    found = _statuses(
        {
            "to": "billing@acme.example",
            "amount": 100,
            "ref": "inv-7",
            "payee": "mallory@evil.example",
            "fee": 10,
            "api_key": "sk-abcdefghijklmnopqrstuvwx",
            "urgent": True,
            "lines": [{"item": "acme"}],
        }
    )
    assert found["$.to"] == NAMED
    assert found["$.amount"] == NAMED
    assert found["$.ref"] == NAMED  # case-insensitive
    assert found["$.payee"] == ABSENT
    assert found["$.fee"] == ABSENT  # "10" is not "100"
    assert found["$.api_key"] == HIDDEN
    assert found["$.urgent"] == ABSENT
    assert found["$.lines[0].item"] == NAMED


def test_a_cut_long_value_is_compared_by_its_shown_start() -> None:
    long_text = "Pay the ACME invoice of 100 euros " + "x" * 100
    (match,) = compare(preview({"body": long_text}), INTENT)
    assert match.status == ABSENT  # the x's are not in the intent
    (named,) = compare(preview({"body": "the acme invoice of 100 euros"}), INTENT)
    assert named.named


@pytest.mark.parametrize("text", ["not json {", '"just a string"'])
def test_a_preview_that_is_not_an_object_is_one_value(text: str) -> None:
    (match,) = compare(text, INTENT)
    assert match.path == "$"


def test_at_most_64_values() -> None:
    assert len(compare(preview({"a": list(range(200))}), INTENT)) <= 64
    assert compare(preview({}), INTENT) == []
