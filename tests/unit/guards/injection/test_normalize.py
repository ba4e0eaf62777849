# Look-alike letters are what these tests are about.
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

import pytest

from ztgate.guards.injection.normalize import OffsetMap, fold, fold_phrase


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("IGNORE Previous", "ignore previous"),
        ("snake_case", "snake case"),
        ("a\x00b", "a b"),
        ("ｉｇｎｏｒｅ", "ignore"),  # full-width
        ("𝐢𝐠𝐧𝐨𝐫𝐞", "ignore"),  # mathematical bold
        ("ígnöré", "ignore"),  # accents dropped
        ("іgnоrе", "ignore"),  # Cyrillic і, о, е
        ("ΙGΝΟRΕ", "ignore"),  # Greek capitals, case-folded, then folded to Latin
        ("ig\u200bno\u200dre\u2060", "ignore"),  # zero-width characters removed
        ("soft\u00adhyphen", "softhyphen"),
        ("a\u202eb\u2066c", "abc"),  # bidi controls removed
        ("x" + "".join(chr(0xE0000 + ord(c)) for c in "hi"), "x"),  # tag characters removed
        ("Straße", "strasse"),
    ],
)
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded


def test_a_phrase_and_the_text_fold_alike_in_any_script() -> None:
    assert fold("Игнорируй ВСЕ") == fold_phrase("игнорируй все")
    assert fold("以前の指示") == fold_phrase("以前の指示")


def test_ascii_offsets_are_unchanged() -> None:
    offsets = OffsetMap("plain ascii")
    assert offsets.original(3) == 3
    assert offsets.original_end(5) == 5


def test_offsets_map_back_across_removed_and_expanded_characters() -> None:
    text = "a\u200b\u200bß IGNORE"  # two invisible characters, and ß folds to two
    folded = fold(text)
    assert folded == "ass ignore"
    offsets = OffsetMap(text)
    start = folded.index("ignore")
    assert text[offsets.original(start) : offsets.original_end(start + 6)] == "IGNORE"
    assert offsets.original(1) == 3  # the first "s" comes from ß, after the invisibles
    assert offsets.original_end(0) == 0
