"""Splitting policy files into policies, and placing errors on lines."""

from __future__ import annotations

import cedarpy
import pytest

from ztgate.policy.text import Chunk, first_failure, mentioned_line, parse_error, split

FILE = """// a comment; with a semicolon
@id("one")
permit (principal, action, resource)
when { context.x == "a;b" };   // trailing comment

forbid (principal, action, resource) // why; here
when { context.y == "quote \\" ; inside" };
"""


def test_policies_split_at_semicolons_outside_strings_and_comments() -> None:
    chunks = split(FILE)
    assert [chunk.line for chunk in chunks] == [2, 6]
    assert chunks[0].text.startswith('@id("one")') and chunks[0].text.endswith("};")
    assert chunks[1].text.startswith("forbid") and chunks[1].text.endswith('inside" };')
    assert all(chunk.complete for chunk in chunks)
    assert len(cedarpy.PolicySet.from_str(FILE)) == len(chunks)


def test_trailing_text_is_an_incomplete_chunk() -> None:
    chunks = split("permit (principal, action, resource);\n\npermit (principal,")
    assert [(c.line, c.complete) for c in chunks] == [(1, True), (3, False)]


def test_comments_only_make_no_chunk() -> None:
    assert split("// nothing\n   \n// here\n") == []


def test_a_syntax_error_is_placed_on_its_line() -> None:
    text = "permit (\n  principal,\n  action,\n  resource\n)\nwhen { context.x &&\n  1 +* 2\n};"
    chunk = split(text)[0]
    with pytest.raises(ValueError, match="unexpected token") as caught:
        cedarpy.PolicySet.from_str(chunk.text)
    assert parse_error(chunk, str(caught.value)) == 7


def test_an_error_found_after_parsing_is_placed_where_its_name_is() -> None:
    chunk = Chunk(10, "permit (principal, action, resource)\nwhen {\n  badfn(1)\n};")
    with pytest.raises(ValueError) as caught:
        cedarpy.PolicySet.from_str(chunk.text)
    assert "`badfn`" in str(caught.value)
    assert parse_error(chunk, str(caught.value)) == 12


@pytest.mark.parametrize(
    ("message", "line"),
    [
        ("for policy `policy0`, attribute `nope` on entity type `Tool` not found", 3),
        ("unable to guarantee safety of access to optional attribute `task.intent`", 4),
        ("unexpected type: expected Long but saw String", 1),
        ("attribute `absent` not found", 1),
    ],
)
def test_validation_errors_are_placed_on_the_line_naming_the_attribute(
    message: str, line: int
) -> None:
    chunk = Chunk(
        1,
        "permit (principal, action, resource)\n// nope in a comment\nwhen { resource.nope &&\n"
        '  context.task.intent == "x" };',
    )
    assert mentioned_line(chunk, message) == line


def test_first_failure_names_the_chunk_and_says_a_semicolon_is_missing() -> None:
    chunks = split("permit (principal, action, resource);\npermit (principal, action, resource)")
    failed = first_failure(chunks, cedarpy.PolicySet.from_str)
    assert failed is not None
    assert failed[0].line == 2 and failed[1] == "the policy does not end with ';'"
    assert first_failure(chunks[:1], cedarpy.PolicySet.from_str) is None
