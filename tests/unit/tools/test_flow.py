"""A tool's flow settings: trusted result fields, egress, argument roles."""

from __future__ import annotations

from typing import Any

import pytest

from ztgate.errors import InvalidInputError
from ztgate.tools.flow import ToolFlow, covers, parse_pattern


def test_a_flow_round_trips_through_json() -> None:
    document = {
        "trusted": True,
        "record_fields": ["/messages/*/from"],
        "content_fields": ["/messages/*/body"],
        "egress": False,
        "arguments": {"/to": "steering", "/body": "content"},
    }
    flow = ToolFlow.from_json(document)
    assert flow is not None
    assert flow.to_json() == {**document, "arguments": {"/body": "content", "/to": "steering"}}
    assert ToolFlow.from_json(flow.to_json()) == flow
    assert ToolFlow.from_json(flow) is flow


def test_an_empty_flow_is_none() -> None:
    assert ToolFlow.from_json(None) is None
    assert ToolFlow.from_json({}) is None
    assert ToolFlow.from_json({"trusted": False, "record_fields": []}) is None


@pytest.mark.parametrize(
    ("risk", "egress", "sends"),
    [
        ("read", None, False),
        ("write", None, True),
        ("critical", None, True),
        ("read", True, True),
        ("write", False, False),
    ],
)
def test_which_tools_send_data_out(risk: str, egress: bool | None, sends: bool) -> None:
    assert ToolFlow(egress=egress).sends_out(risk) is sends


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "must be a JSON object"),
        ({"trusted": "yes"}, "flow.trusted"),
        ({"egress": 1}, "flow.egress"),
        ({"record_fields": "/a"}, "list of JSON Pointers"),
        ({"record_fields": ["a"]}, "not a JSON Pointer"),
        ({"content_fields": ["/a~2"]}, "not a valid JSON Pointer"),
        ({"record_fields": ["/x"] * 65}, "at most 64"),
        ({"arguments": ["/to"]}, "maps pointers"),
        ({"arguments": {"/to": "recipient"}}, "the role is one of"),
        ({"arguments": {"to": "steering"}}, "not a JSON Pointer"),
        ({"bogus": 1}, "unknown key 'bogus'"),
    ],
)
def test_bad_flows_are_refused(value: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ToolFlow.from_json(value)


def test_patterns_cover_their_subtree_and_wildcards_match_one_step() -> None:
    pattern = parse_pattern("/messages/*/body", "x")
    assert pattern == ("messages", "*", "body")
    assert covers(pattern, ("messages", "0", "body"))
    assert covers(pattern, ("messages", "12", "body", "html"))
    assert not covers(pattern, ("messages", "0", "subject"))
    assert not covers(pattern, ("messages", "0"))
    assert parse_pattern("/a~1b/~0c", "x") == ("a/b", "~c")
    assert covers(parse_pattern("/", "x"), ("", "deeper"))
