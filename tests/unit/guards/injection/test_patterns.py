from __future__ import annotations

import re

import re2

from ztgate.guards.injection import patterns


def test_every_rule_is_re2_syntax_with_a_stable_name() -> None:
    names = set()
    for rule in patterns.RULES:
        re2.compile(rule.pattern)  # raises on anything RE2 cannot do in linear time
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", rule.rule), rule.rule
        assert 0 <= rule.weight <= 1
        names.add(rule.rule)
    assert len(names) >= 30


def test_the_override_family_covers_at_least_ten_languages() -> None:
    languages = {r.rule.split(".")[1] for r in patterns.RULES if r.kind == "override"}
    assert {"en", "de", "fr", "es", "it", "pt", "nl", "zh", "ja", "ru"} <= languages


def test_a_gap_is_a_bounded_number_of_words() -> None:
    within = re2.compile("ignore" + patterns.gap(2) + "rules")
    assert within.search("ignore all the rules")
    assert not within.search("ignore one two three rules")
    assert not within.search("ignore\x00rules")  # never across two strings of a result


def test_the_encoding_and_invisible_patterns_compile() -> None:
    for name in (
        "BASE64_RUN",
        "HEX_RUN",
        "PERCENT_ESCAPE",
        "HTML_ENTITY",
        "INWORD_ZERO_WIDTH",
        "TAG_RUN",
        "VARIATION_RUN",
        "BIDI_OVERRIDE",
        "BIDI_EMBEDDING",
        "ANY_INVISIBLE",
    ):
        re2.compile(getattr(patterns, name))
