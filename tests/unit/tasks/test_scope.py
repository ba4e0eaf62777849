"""Task scopes: parsing, argument limits, destination hosts, and narrowing on delegation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.errors import InvalidInputError
from ztgate.tasks.scope import (
    MAX_DOMAINS,
    MAX_ENUM,
    MAX_LIMITS,
    MAX_PATTERN_CHARS,
    MAX_TOOLS,
    Scope,
    destination_host,
    make_limit,
    narrow,
    parse_scope,
    resolve,
)


def scope_of(limits: dict[str, Any] | None = None, tool: str = "send") -> Scope:
    return parse_scope({"tools": {tool: {"limits": limits} if limits is not None else {}}})


def violation(limits: dict[str, Any], arguments: dict[str, Any], tool: str = "send") -> str | None:
    return scope_of(limits, tool).violation(tool, arguments)


def refused(data: Any, *fragments: str) -> str:
    with pytest.raises(InvalidInputError) as caught:
        parse_scope(data)
    for fragment in fragments:
        assert fragment in caught.value.message, caught.value.message
    return caught.value.message


# -- parsing ------------------------------------------------------------------------------------


def test_the_documented_example_parses() -> None:
    scope = parse_scope(
        {
            "tools": {
                "send_email": {
                    "limits": {
                        "/to": {"domains": ["acme.example", "*.acme.example"]},
                        "/subject": {"pattern": "[^\\r\\n]{1,200}"},
                        "/amount": {"minimum": 0, "maximum": 100, "required": True},
                        "/urgency": {"enum": ["low", "normal"]},
                    }
                },
                "search": {},
            }
        }
    )
    assert set(scope.tools) == {"send_email", "search"}
    assert not scope.tools["search"].limits
    limits = scope.tools["send_email"].limits
    assert limits["/to"].domains == ("acme.example", "*.acme.example")
    assert limits["/amount"].required and limits["/amount"].maximum == 100
    assert limits["/urgency"].enum_values == ("low", "normal")


@pytest.mark.parametrize("body", [None, {}, {"limits": {}}])
def test_a_tool_without_limits_may_be_written_several_ways(body: Any) -> None:
    scope = parse_scope({"tools": {"search": body}})
    assert not scope.tools["search"].limits
    assert scope.violation("search", {"anything": [1, {"x": 2}]}) is None


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        (None, ['a scope is an object {"tools"']),
        ([], ['a scope is an object {"tools"']),
        ({"tools": {"a": {}}, "extra": 1}, ['a scope is an object {"tools"']),
        ({}, ["a scope names at least one tool"]),
        ({"tools": {}}, ["a scope names at least one tool"]),
        ({"tools": ["a"]}, ["a scope names at least one tool"]),
        ({"tools": {"": {}}}, ["a tool name is 1-128 ASCII characters"]),
        ({"tools": {"x" * 129: {}}}, ["a tool name is 1-128 ASCII characters"]),
        ({"tools": {"sénd": {}}}, ["a tool name is 1-128 ASCII characters"]),
        ({"tools": {"a": []}}, ["tool 'a'", 'expected {"limits"']),
        ({"tools": {"a": {"limit": {}}}}, ["tool 'a'", 'expected {"limits"']),
        ({"tools": {"a": {"limits": []}}}, ["tool 'a'", "limits must be an object"]),
        ({"tools": {"a": {"limits": {"": {"maximum": 1}}}}}, ["a limit's key is a JSON Pointer"]),
        (
            {"tools": {"a": {"limits": {"/" + "x" * 512: {"maximum": 1}}}}},
            ["a limit's key is a JSON Pointer"],
        ),
        ({"tools": {"a": {"limits": {"/a~2": {"maximum": 1}}}}}, ["'/a~2' is not a valid JSON"]),
        ({"tools": {"a": {"limits": {"/a~": {"maximum": 1}}}}}, ["is not a valid JSON Pointer"]),
        (
            {"tools": {"a": {"limits": {"/x": {"maximum": 1}, "x": {"maximum": 2}}}}},
            ["tool 'a'", "/x is limited twice"],
        ),
        ({"tools": {"a": {"limits": {"x": {}}}}}, ["argument /x", "a limit is an object"]),
        ({"tools": {"a": {"limits": {"x": 5}}}}, ["argument /x", "a limit is an object"]),
        (
            {"tools": {"a": {"limits": {"x": {"max": 5}}}}},
            ["argument /x", "unknown limit 'max'", "use domains, enum, maximum"],
        ),
        ({"tools": {"a": {"limits": {"x": {"enum": []}}}}}, ["enum is a list of 1-256 values"]),
        ({"tools": {"a": {"limits": {"x": {"enum": "low"}}}}}, ["enum is a list of 1-256"]),
        (
            {"tools": {"a": {"limits": {"x": {"enum": list(range(MAX_ENUM + 1))}}}}},
            ["enum is a list of 1-256"],
        ),
        ({"tools": {"a": {"limits": {"x": {"enum": [float("nan")]}}}}}, ["argument /x: enum:"]),
        ({"tools": {"a": {"limits": {"x": {"pattern": ""}}}}}, ["pattern is a regular expr"]),
        ({"tools": {"a": {"limits": {"x": {"pattern": []}}}}}, ["pattern is a regular expr"]),
        ({"tools": {"a": {"limits": {"x": {"pattern": ["a", 1]}}}}}, ["pattern is a regular"]),
        ({"tools": {"a": {"limits": {"x": {"pattern": 7}}}}}, ["pattern is a regular expr"]),
        (
            {"tools": {"a": {"limits": {"x": {"pattern": "a" * (MAX_PATTERN_CHARS + 1)}}}}},
            [f"1-{MAX_PATTERN_CHARS} characters"],
        ),
        (
            {"tools": {"a": {"limits": {"x": {"pattern": "a("}}}}},
            ["argument /x", "pattern 'a(' does not compile"],
        ),
        ({"tools": {"a": {"limits": {"x": {"minimum": "1"}}}}}, ["minimum is a finite number"]),
        ({"tools": {"a": {"limits": {"x": {"minimum": True}}}}}, ["minimum is a finite number"]),
        ({"tools": {"a": {"limits": {"x": {"maximum": None}}}}}, ["maximum is a finite number"]),
        (
            {"tools": {"a": {"limits": {"x": {"maximum": float("inf")}}}}},
            ["maximum is a finite number"],
        ),
        (
            {"tools": {"a": {"limits": {"x": {"minimum": 5, "maximum": 4}}}}},
            ["argument /x: minimum is above maximum"],
        ),
        ({"tools": {"a": {"limits": {"x": {"domains": []}}}}}, ["domains is a list of 1-256"]),
        ({"tools": {"a": {"limits": {"x": {"domains": "a.example"}}}}}, ["domains is a list"]),
        (
            {"tools": {"a": {"limits": {"x": {"domains": ["a.example"] * (MAX_DOMAINS + 1)}}}}},
            ["domains is a list of 1-256"],
        ),
        (
            {"tools": {"a": {"limits": {"x": {"domains": [7]}}}}},
            ["a domain is a host name such as 'acme.example'"],
        ),
        (
            {"tools": {"a": {"limits": {"x": {"domains": ["bücher.example"]}}}}},
            ["'bücher.example' is not a host name (ASCII; use punycode)"],
        ),
        ({"tools": {"a": {"limits": {"x": {"domains": ["*"]}}}}}, ["'*' is not a host name"]),
        ({"tools": {"a": {"limits": {"x": {"domains": ["*.*.a.b"]}}}}}, ["is not a host name"]),
        ({"tools": {"a": {"limits": {"x": {"domains": ["a.*.b"]}}}}}, ["is not a host name"]),
        ({"tools": {"a": {"limits": {"x": {"domains": ["-a.b"]}}}}}, ["is not a host name"]),
        ({"tools": {"a": {"limits": {"x": {"domains": ["a b"]}}}}}, ["is not a host name"]),
        (
            {"tools": {"a": {"limits": {"x": {"domains": ["a." * 127 + "bc"]}}}}},
            ["is not a host name"],
        ),
        ({"tools": {"a": {"limits": {"x": {"required": "yes"}}}}}, ["required is true or false"]),
        ({"tools": {"a": {"limits": {"x": {"required": 1}}}}}, ["required is true or false"]),
    ],
)
def test_malformed_scopes_are_refused_with_a_clear_message(data: Any, fragments: list[str]) -> None:
    refused(data, *fragments)


def test_the_size_limits_are_enforced() -> None:
    refused({"tools": {f"t{i}": {} for i in range(MAX_TOOLS + 1)}}, "at most 256 tools")
    parse_scope({"tools": {f"t{i}": {} for i in range(MAX_TOOLS)}})
    limits = {f"a{i}": {"maximum": 1} for i in range(MAX_LIMITS + 1)}
    refused({"tools": {"a": {"limits": limits}}}, "tool 'a': at most 64 limits")
    limits.popitem()
    parse_scope({"tools": {"a": {"limits": limits}}})


def test_an_error_names_the_tool_and_the_argument_but_not_other_tools() -> None:
    message = refused(
        {"tools": {"ok": {}, "pay": {"limits": {"amount": {"maximum": "lots"}}}}},
        "scope: tool 'pay', argument /amount: maximum is a finite number",
    )
    assert "'ok'" not in message


def test_domains_are_normalised_to_lower_case_without_the_trailing_dot() -> None:
    scope = scope_of({"to": {"domains": ["ACME.Example.", "*.Acme.EXAMPLE"]}})
    assert scope.tools["send"].limits["/to"].domains == ("acme.example", "*.acme.example")


def test_bare_names_become_pointers_with_escaping() -> None:
    scope = scope_of({"to": {"maximum": 1}, "a/b": {"maximum": 1}, "c~d": {"maximum": 1}})
    assert set(scope.tools["send"].limits) == {"/to", "/a~1b", "/c~0d"}
    assert scope.violation("send", {"a/b": 2}) == "argument /a~1b is above the scope's maximum 1"
    assert scope.violation("send", {"c~d": 2}) == "argument /c~0d is above the scope's maximum 1"


# -- limits --------------------------------------------------------------------------------------


def test_a_tool_outside_the_scope_is_refused_by_name() -> None:
    assert scope_of().violation("rm_rf", {}) == "tool 'rm_rf' is not in the task's scope"
    assert scope_of().violation("send", {}) is None


def test_enum() -> None:
    limits = {"urgency": {"enum": ["low", "normal", 3, None, {"a": [1, 2]}]}}
    for ok in ("low", "normal", 3, 3.0, None):
        assert violation(limits, {"urgency": ok}) is None, ok
    for bad in ("high", "LOW", 4, True, ["low", "high"], {"a": [2, 1]}):
        why = violation(limits, {"urgency": bad})
        assert why is not None, bad
    assert violation(limits, {"urgency": []}) is None  # no element breaks it
    assert violation(limits, {"urgency": "high"}) == (
        "argument /urgency is not one of the scope's allowed values"
    )


def test_enum_object_values_compare_whatever_their_key_order() -> None:
    limits = {"opts": {"enum": [{"b": 1, "a": [1, {"y": 2, "x": 1}]}]}}
    limit = scope_of(limits).tools["send"].limits["/opts"]
    same = make_limit("/x", enum_values=[{"a": [1, {"x": 1, "y": 2}], "b": 1.0}])
    assert same.enum == limit.enum
    # An object argument still fails (limits apply to values): fail closed.
    assert violation(limits, {"opts": {"a": [1, {"x": 1, "y": 2}], "b": 1}}) == (
        "argument /opts is an object; the scope's limits apply to values"
    )


def test_bool_is_not_a_number_and_a_number_is_not_a_bool() -> None:
    numeric = {"n": {"minimum": 0, "maximum": 10}}
    assert violation(numeric, {"n": True}) == (
        "argument /n is not a number, as the scope's range requires"
    )
    assert violation(numeric, {"n": False}) is not None
    assert violation({"b": {"enum": [True]}}, {"b": 1}) is not None
    assert violation({"b": {"enum": [1]}}, {"b": True}) is not None
    assert violation({"b": {"enum": [0]}}, {"b": False}) is not None
    assert violation({"b": {"enum": [True]}}, {"b": True}) is None


def test_minimum_and_maximum_are_inclusive() -> None:
    limits = {"amount": {"minimum": -1.5, "maximum": 100}}
    for ok in (-1.5, 0, 99.999, 100, 100.0):
        assert violation(limits, {"amount": ok}) is None, ok
    assert violation(limits, {"amount": 100.001}) == (
        "argument /amount is above the scope's maximum 100"
    )
    assert violation(limits, {"amount": -2}) == "argument /amount is below the scope's minimum -1.5"
    assert violation(limits, {"amount": "50"}) == (
        "argument /amount is not a number, as the scope's range requires"
    )
    assert violation(limits, {"amount": None}) is not None
    assert violation({"n": {"minimum": 0}}, {"n": 10**30}) is None
    assert violation({"n": {"maximum": 0}}, {"n": 10**30}) is not None


def test_pattern_must_match_the_whole_string() -> None:
    limits = {"subject": {"pattern": "[a-z]{1,5}"}}
    assert violation(limits, {"subject": "hello"}) is None
    assert violation(limits, {"subject": "hello!"}) == (
        "argument /subject does not match the scope's pattern '[a-z]{1,5}'"
    )
    assert violation(limits, {"subject": "xhellox"}) is not None
    assert violation(limits, {"subject": "a\n"}) is not None
    assert violation(limits, {"subject": 5}) == (
        "argument /subject is not a string, as the scope's pattern requires"
    )


def test_every_pattern_of_a_list_must_match() -> None:
    limits = {"s": {"pattern": ["[a-z]+", ".{3}"]}}
    assert violation(limits, {"s": "abc"}) is None
    assert violation(limits, {"s": "abcd"}) == (
        "argument /s does not match the scope's pattern '.{3}'"
    )
    assert violation(limits, {"s": "AB1"}) is not None


def test_domains_of_urls_emails_and_bare_hosts() -> None:
    limits = {"to": {"domains": ["acme.example", "*.corp.example"]}}
    for ok in (
        "https://acme.example/path?q=1",
        "HTTPS://ACME.EXAMPLE:8443/x",
        "bob@acme.example",
        "acme.example",
        "acme.example.",
        "https://mail.corp.example/",
        "a.b.corp.example",
        "alice@x.corp.example",
    ):
        assert violation(limits, {"to": ok}) is None, ok
    for bad in (
        "https://evil.example/",
        "corp.example",  # the apex is not under *.corp.example
        "https://corp.example/",
        "eve@notacme.example",
        "acme.example.evil.example",
        "xcorp.example",
        "evilcorp.example",
    ):
        why = violation(limits, {"to": bad})
        assert why is not None and "outside the scope's domains" in why, (bad, why)
    assert violation(limits, {"to": "https://evil.example/"}) == (
        "argument /to names a host outside the scope's domains ['acme.example', '*.corp.example']"
    )


@pytest.mark.parametrize(
    "value", [5, "", "not a host!", "http:///nohost", "https://bücher.example"]
)
def test_a_value_with_no_host_fails_a_domains_limit(value: Any) -> None:
    assert violation({"to": {"domains": ["acme.example"]}}, {"to": value}) == (
        "argument /to names no destination host the scope's domains can check"
    )


def test_required_and_absent_arguments() -> None:
    assert violation({"amount": {"maximum": 5}}, {}) is None  # the tool's schema decides
    assert violation({"amount": {"maximum": 5, "required": True}}, {}) == (
        "argument /amount is required by the scope"
    )
    assert violation({"amount": {"required": True}}, {"amount": None}) is None
    assert violation({"amount": {"required": False}}, {}) is None
    # null is present, and it is not a number.
    assert violation({"amount": {"maximum": 5}}, {"amount": None}) is not None


def test_a_limit_applies_to_every_element_of_an_array() -> None:
    limits = {"to": {"domains": ["acme.example"]}}
    assert violation(limits, {"to": ["a@acme.example", "https://acme.example/"]}) is None
    assert violation(limits, {"to": []}) is None
    assert violation(limits, {"to": ["a@acme.example", "b@evil.example"]}) is not None
    assert violation({"n": {"maximum": 3}}, {"n": [1, 2, 3]}) is None
    assert violation({"n": {"maximum": 3}}, {"n": [1, 4]}) == (
        "argument /n is above the scope's maximum 3"
    )
    assert violation({"n": {"enum": [1, 2]}}, {"n": [2, 1, 2]}) is None
    assert violation({"n": {"enum": [1, 2]}}, {"n": [1, 3]}) is not None


def test_nested_values_and_objects_fail_closed() -> None:
    limits = {"to": {"domains": ["acme.example"]}}
    assert violation(limits, {"to": [["a@acme.example"]]}) == (
        "argument /to holds a nested value the scope's limits cannot apply to"
    )
    assert violation(limits, {"to": [{"address": "a@acme.example"}]}) is not None
    assert violation(limits, {"to": {"address": "a@acme.example"}}) == (
        "argument /to is an object; the scope's limits apply to values"
    )
    # Even a limit that only requires presence refuses an object's contents unchecked.
    assert violation({"to": {"required": True}}, {"to": {}}) is not None


def test_every_limit_of_a_tool_must_hold() -> None:
    limits = {"a": {"maximum": 1}, "b": {"enum": ["x"]}}
    assert violation(limits, {"a": 1, "b": "x"}) is None
    assert violation(limits, {"a": 2, "b": "x"}) is not None
    assert violation(limits, {"a": 1, "b": "y"}) is not None


# -- JSON pointers -------------------------------------------------------------------------------


def test_pointers_reach_nested_objects_and_array_elements() -> None:
    limits = {
        "/message/to": {"domains": ["acme.example"]},
        "/recipients/1": {"enum": ["bob"]},
    }
    arguments = {"message": {"to": "a@acme.example"}, "recipients": ["alice", "bob"]}
    assert violation(limits, arguments) is None
    assert violation(limits, {**arguments, "message": {"to": "a@evil.example"}}) == (
        "argument /message/to names a host outside the scope's domains ['acme.example']"
    )
    assert violation(limits, {**arguments, "recipients": ["bob", "alice"]}) == (
        "argument /recipients/1 is not one of the scope's allowed values"
    )


def test_pointer_escapes_follow_rfc_6901() -> None:
    limits = {"/a~1b/c~0d": {"maximum": 1}}
    assert violation(limits, {"a/b": {"c~d": 1}}) is None
    assert violation(limits, {"a/b": {"c~d": 2}}) is not None
    # "~01" is "~1", not "/".
    assert resolve({"~1": 5, "/": 6}, "/~01") == 5
    assert resolve({"": {"": 7}}, "//") == 7


@pytest.mark.parametrize(
    ("document", "pointer"),
    [
        ({"a": [1, 2]}, "/a/2"),
        ({"a": [1, 2]}, "/a/-"),
        ({"a": [1, 2]}, "/a/01"),
        ({"a": [1, 2]}, "/a/x"),
        ({"a": [1, 2]}, "/a/-1"),
        ({"a": "text"}, "/a/0"),
        ({"a": 5}, "/a/b"),
        ({"a": None}, "/a/b"),
        ({}, "/a"),
    ],
)
def test_a_pointer_that_leads_nowhere_is_absent(document: Any, pointer: str) -> None:
    limit = make_limit(pointer, required=True)
    assert limit.violation(resolve(document, pointer)) == "is required by the scope"
    assert make_limit(pointer, maximum=0).violation(resolve(document, pointer)) is None


def test_resolve_finds_values() -> None:
    document = {"a": [10, {"b": [None, False]}], "c": 0}
    assert resolve(document, "/a/0") == 10
    assert resolve(document, "/a/1/b/0") is None
    assert resolve(document, "/a/1/b/1") is False
    assert resolve(document, "/c") == 0
    assert resolve(document, "") is document


# -- destination hosts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("https://acme.example/", "acme.example"),
        ("https://ACME.Example:443/a/b?c#d", "acme.example"),
        ("https://acme.example./", "acme.example"),
        ("ftp://files.acme.example", "files.acme.example"),
        ("mailto:bob@acme.example", "acme.example"),
        ("bob@acme.example", "acme.example"),
        ("Bob <bob@acme.example>", None),
        ("bob@acme.example.", "acme.example"),
        ("acme.example", "acme.example"),
        ("  acme.example  ", "acme.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        # userinfo tricks: the host is what follows the last "@" of the authority
        ("https://acme.example@evil.example/", "evil.example"),
        ("https://acme.example:pw@evil.example/", "evil.example"),
        ("https://a@acme.example@evil.example/", "evil.example"),
        ("http://evil.example#@acme.example", "evil.example"),
        ("http://evil.example?@acme.example", "evil.example"),
        ("http://evil.example/@acme.example", "evil.example"),
        ("http://acme.example%2F@evil.example", "evil.example"),
        ("a@b@evil.example", "evil.example"),
        # WHATWG URL parsers (browsers, Node) end the host at a backslash: refused.
        ("http://evil.example\\@acme.example", None),
        ("https://evil.example\\.acme.example/", None),
        # internationalised names: not matched by ASCII rules, so refused
        ("https://bücher.example/", None),
        ("bob@bücher.example", None),
        ("bücher.example", None),
        ("https://\u0430cme.example/", None),  # a Cyrillic a
        ("https://acme.example\u3002evil/", None),
        ("", None),
        ("   ", None),
        ("http://", None),
        ("http://[::1]/", None),
        ("http://[bad/", None),
        ("bob@", None),
        ("acme.example/path", None),
        ("acme..example", None),
        ("-acme.example", None),
        ("x" * 2049, None),
        (5, None),
        (None, None),
        (["acme.example"], None),
    ],
)
def test_destination_host(value: Any, host: str | None) -> None:
    assert destination_host(value) == host


def test_a_wildcard_covers_subdomains_at_any_depth_but_not_the_apex() -> None:
    limits = {"to": {"domains": ["*.acme.example"]}}
    assert violation(limits, {"to": "https://a.acme.example/"}) is None
    assert violation(limits, {"to": "https://a.b.c.acme.example/"}) is None
    assert violation(limits, {"to": "https://acme.example/"}) is not None
    assert violation(limits, {"to": "https://a.acme.example.evil.example/"}) is not None
    assert violation(limits, {"to": "https://evilacme.example/"}) is not None


# -- JSON form -----------------------------------------------------------------------------------


def test_to_json_is_sorted_and_normalised() -> None:
    scope = parse_scope(
        {
            "tools": {
                "z": {},
                "a": {
                    "limits": {
                        "b": {"maximum": 5.0, "minimum": -1, "pattern": ["x+"]},
                        "a": {"pattern": ["x", "y"], "domains": ["A.example"], "required": True},
                        "c": {"enum": [1, "x"], "required": False},
                    }
                },
            }
        }
    )
    assert scope.to_json() == {
        "tools": {
            "a": {
                "limits": {
                    "/a": {"pattern": ["x", "y"], "domains": ["a.example"], "required": True},
                    "/b": {"pattern": "x+", "minimum": -1, "maximum": 5},
                    "/c": {"enum": [1, "x"]},
                }
            },
            "z": {},
        }
    }
    assert list(scope.to_json()["tools"]) == ["a", "z"]
    assert parse_scope(scope.to_json()) == scope


def test_a_limit_that_only_says_not_required_survives_the_round_trip() -> None:
    # The stored and signed form must parse again (tasks are read back from it).
    scope = scope_of({"x": {"required": False}})
    assert parse_scope(scope.to_json()) == scope


def test_non_integral_bounds_keep_their_value() -> None:
    scope = scope_of({"x": {"minimum": 0.25, "maximum": 2**60}})
    limit = scope.to_json()["tools"]["send"]["limits"]["/x"]
    assert limit == {"minimum": 0.25, "maximum": 2**60}


# -- narrowing -----------------------------------------------------------------------------------

PARENT = parse_scope(
    {
        "tools": {
            "send": {
                "limits": {
                    "to": {"domains": ["acme.example", "*.corp.example"]},
                    "amount": {"minimum": 0, "maximum": 100},
                    "urgency": {"enum": ["low", "normal"]},
                    "subject": {"pattern": "[a-z ]+"},
                }
            },
            "search": {},
        }
    }
)


def narrowed(child: dict[str, Any]) -> Scope:
    return narrow(PARENT, parse_scope({"tools": child}))


def narrowing_refused(child: dict[str, Any], *fragments: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        narrowed(child)
    for fragment in fragments:
        assert fragment in caught.value.message, caught.value.message


def test_none_keeps_the_parent_scope() -> None:
    assert narrow(PARENT, None) is PARENT


def test_dropping_tools_and_inheriting_limits() -> None:
    child = narrowed({"send": {}})
    assert set(child.tools) == {"send"}
    assert child.tools["send"].limits == PARENT.tools["send"].limits
    assert child.violation("search", {}) == "tool 'search' is not in the task's scope"
    assert child.violation("send", {"amount": 101}) is not None


def test_adding_a_tool_is_refused() -> None:
    narrowing_refused(
        {"send": {}, "delete": {}}, "delegation adds tool 'delete', which the parent may not call"
    )


def test_tightening_is_allowed() -> None:
    child = narrowed(
        {
            "send": {
                "limits": {
                    "amount": {"minimum": 10, "maximum": 50},
                    "urgency": {"enum": ["low"]},
                    "to": {"domains": ["mail.corp.example", "*.x.corp.example"]},
                }
            },
            "search": {"limits": {"q": {"pattern": "[a-z]+"}}},
        }
    )
    send = child.tools["send"].limits
    assert (send["/amount"].minimum, send["/amount"].maximum) == (10, 50)
    assert send["/urgency"].enum_values == ("low",)
    assert send["/to"].domains == ("mail.corp.example", "*.x.corp.example")
    assert child.violation("send", {"amount": 60}) == (
        "argument /amount is above the scope's maximum 50"
    )
    assert child.violation("send", {"to": "bob@acme.example"}) is not None
    assert child.violation("send", {"to": "bob@a.x.corp.example"}) is None
    assert child.violation("search", {"q": "ok"}) is None
    assert child.violation("search", {"q": "NOT OK"}) is not None


def test_a_one_sided_bound_inherits_the_other() -> None:
    child = narrowed({"send": {"limits": {"amount": {"maximum": 10}}}})
    limit = child.tools["send"].limits["/amount"]
    assert (limit.minimum, limit.maximum) == (0, 10)
    assert child.violation("send", {"amount": -1}) is not None


@pytest.mark.parametrize(
    ("limits", "fragments"),
    [
        (
            {"urgency": {"enum": ["low", "urgent"]}},
            ["tool 'send', argument /urgency", "enum adds values the parent does not allow"],
        ),
        ({"amount": {"minimum": -1}}, ["argument /amount", "minimum is below the parent's 0"]),
        ({"amount": {"maximum": 101}}, ["argument /amount", "maximum is above the parent's 100"]),
        ({"amount": {"minimum": 101}}, ["argument /amount", "minimum is above maximum"]),
        ({"to": {"domains": ["evil.example"]}}, ["domain 'evil.example' is outside the parent"]),
        ({"to": {"domains": ["corp.example"]}}, ["domain 'corp.example' is outside"]),
        ({"to": {"domains": ["*.acme.example"]}}, ["domain '*.acme.example' is outside"]),
        ({"to": {"domains": ["*.example"]}}, ["domain '*.example' is outside"]),
    ],
)
def test_widening_a_limit_is_refused_with_the_reason(
    limits: dict[str, Any], fragments: list[str]
) -> None:
    narrowing_refused({"send": {"limits": limits}}, "delegation: ", *fragments)


def test_patterns_accumulate() -> None:
    child = narrowed({"send": {"limits": {"subject": {"pattern": "[a-c ]+"}}}})
    assert child.tools["send"].limits["/subject"].patterns == ("[a-z ]+", "[a-c ]+")
    assert child.violation("send", {"subject": "abc"}) is None
    assert child.violation("send", {"subject": "xyz"}) is not None  # the child's pattern
    assert child.violation("send", {"subject": "ABC"}) is not None  # both
    # Repeating the parent's pattern adds nothing.
    same = narrowed({"send": {"limits": {"subject": {"pattern": "[a-z ]+"}}}})
    assert same.tools["send"].limits["/subject"].patterns == ("[a-z ]+",)


def test_required_is_ored() -> None:
    parent = parse_scope(
        {"tools": {"t": {"limits": {"a": {"required": True}, "b": {"maximum": 1}}}}}
    )
    child = narrow(
        parent,
        parse_scope(
            {"tools": {"t": {"limits": {"a": {"required": False}, "b": {"required": True}}}}}
        ),
    )
    assert child.tools["t"].limits["/a"].required
    assert child.tools["t"].limits["/b"].required
    assert child.violation("t", {"b": 1}) == "argument /a is required by the scope"
    assert child.violation("t", {"a": 1}) == "argument /b is required by the scope"


def test_new_limits_on_unlimited_arguments_are_added() -> None:
    child = narrowed({"send": {"limits": {"cc": {"domains": ["acme.example"]}}}})
    assert set(child.tools["send"].limits) == {"/to", "/amount", "/urgency", "/subject", "/cc"}
    assert child.violation("send", {"cc": "x@evil.example"}) is not None


def test_a_child_may_add_an_enum_or_domains_where_the_parent_had_none() -> None:
    child = narrowed(
        {"send": {"limits": {"amount": {"enum": [5, 500]}, "subject": {"domains": ["a.example"]}}}}
    )
    amount = child.tools["send"].limits["/amount"]
    assert amount.enum_values == (5, 500) and amount.maximum == 100
    assert child.violation("send", {"amount": 5}) is None
    assert child.violation("send", {"amount": 500}) is not None  # still the parent's maximum


def test_enum_subset_is_compared_canonically() -> None:
    parent = parse_scope({"tools": {"t": {"limits": {"n": {"enum": [1, {"a": 1, "b": 2}]}}}}})
    child = narrow(
        parent, parse_scope({"tools": {"t": {"limits": {"n": {"enum": [1.0, {"b": 2, "a": 1}]}}}}})
    )
    assert child.violation("t", {"n": 1}) is None


# -- properties ----------------------------------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
_hosts = st.lists(_labels, min_size=1, max_size=3).map(".".join)
_domains = st.tuples(st.booleans(), _hosts).map(lambda t: ("*." if t[0] else "") + t[1])
_patterns = st.sampled_from(["[a-z]*", "[a-m]+", ".{0,3}", "x.*", "[0-9a-f]+", "a|b|c"])
_bounds = st.integers(-50, 50) | st.floats(-50, 50, allow_nan=False)


@st.composite
def _limit_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if draw(st.booleans()):
        spec["enum"] = draw(st.lists(_json_values, min_size=1, max_size=4))
    if draw(st.booleans()):
        spec["pattern"] = draw(_patterns | st.lists(_patterns, min_size=1, max_size=2))
    low, high = draw(st.none() | _bounds), draw(st.none() | _bounds)
    if low is not None and high is not None and low > high:
        low, high = high, low
    if low is not None:
        spec["minimum"] = low
    if high is not None:
        spec["maximum"] = high
    if draw(st.booleans()):
        spec["domains"] = draw(st.lists(_domains, min_size=1, max_size=3))
    if draw(st.booleans()) or not spec:
        spec["required"] = draw(st.booleans())
    return spec


_names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8)
_scope_json = st.dictionaries(
    _names,
    st.none()
    | st.dictionaries(_names, _limit_specs(), max_size=3).map(lambda limits: {"limits": limits}),
    min_size=1,
    max_size=3,
).map(lambda tools: {"tools": tools})


@settings(max_examples=80, deadline=None)
@given(_scope_json)
def test_to_json_and_parse_scope_round_trip(data: dict[str, Any]) -> None:
    try:
        scope = parse_scope(data)
    except InvalidInputError:
        # A bare name and its pointer spelling may collide ("x" and "/x").
        return
    again = parse_scope(scope.to_json())
    assert again == scope
    assert again.to_json() == scope.to_json()


@settings(max_examples=100, deadline=None)
@given(st.lists(_json_values, min_size=1, max_size=4), _json_values)
def test_enum_membership_is_canonical(values: list[Any], probe: Any) -> None:
    from ztgate.canonical import canonical_json

    limit = make_limit("/x", enum_values=values)
    member = any(canonical_json(probe) == canonical_json(v) for v in values)
    why = limit.violation(probe)
    if isinstance(probe, dict) or (
        isinstance(probe, list) and any(isinstance(e, list | dict) for e in probe)
    ):
        assert why is not None
    elif not isinstance(probe, list):
        assert (why is None) == member


@settings(max_examples=100, deadline=None)
@given(st.integers(-(10**6), 10**6))
def test_integral_floats_equal_their_integers_in_an_enum(number: int) -> None:
    assert make_limit("/x", enum_values=[number]).violation(float(number)) is None
    assert make_limit("/x", enum_values=[float(number)]).violation(number) is None
    assert make_limit("/x", enum_values=[number]).violation(number + 0.5) is not None


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.text(max_size=3), _json_scalars, max_size=5),
    st.randoms(use_true_random=False),
)
def test_enum_object_values_ignore_key_order(value: dict[str, Any], rnd: Any) -> None:
    items = list(value.items())
    rnd.shuffle(items)
    shuffled = dict(items)
    assert (
        make_limit("/x", enum_values=[value]).enum == make_limit("/x", enum_values=[shuffled]).enum
    )


_probes = (
    st.integers(-60, 60)
    | st.floats(-60, 60, allow_nan=False)
    | st.booleans()
    | st.none()
    | st.text(alphabet="abcxyz019-", max_size=5)
    | _hosts
    | st.builds(lambda h: f"https://{h}/", _hosts)
    | st.builds(lambda h: f"me@{h}", _hosts)
)


@settings(max_examples=150, deadline=None)
@given(
    _limit_specs(),
    _limit_specs(),
    st.lists(st.one_of(_probes, st.lists(_probes, max_size=3)), min_size=1, max_size=8),
)
def test_a_narrowed_scope_never_admits_what_the_parent_refuses(
    parent_spec: dict[str, Any], child_spec: dict[str, Any], probes: list[Any]
) -> None:
    parent = parse_scope({"tools": {"t": {"limits": {"x": parent_spec}}, "u": {}}})
    child_request = parse_scope({"tools": {"t": {"limits": {"x": child_spec, "y": child_spec}}}})
    try:
        child = narrow(parent, child_request)
    except InvalidInputError:
        return
    assert set(child.tools) <= set(parent.tools)
    for probe in [*probes, None]:
        for arguments in ({"x": probe}, {"x": probe, "y": probe}, {}):
            if parent.violation("t", arguments) is not None:
                assert child.violation("t", arguments) is not None, (arguments, child.to_json())
    assert child.violation("u", {}) is not None
    # Narrowing again with what came out changes nothing it admits.
    again = narrow(child, parse_scope(child.to_json()))
    for probe in probes:
        assert (again.violation("t", {"x": probe}) is None) == (
            child.violation("t", {"x": probe}) is None
        )


@settings(max_examples=60, deadline=None)
@given(st.lists(_domains, min_size=1, max_size=3), st.lists(_domains, min_size=1, max_size=3))
def test_narrowed_domains_admit_only_hosts_the_parent_admits(
    parent_domains: list[str], child_domains: list[str]
) -> None:
    parent = parse_scope({"tools": {"t": {"limits": {"to": {"domains": parent_domains}}}}})
    try:
        child = narrow(
            parent, parse_scope({"tools": {"t": {"limits": {"to": {"domains": child_domains}}}}})
        )
    except InvalidInputError:
        return
    hosts = [d.removeprefix("*.") for d in parent_domains + child_domains]
    hosts += ["a." + h for h in hosts] + ["b.a." + h for h in hosts]
    for host in hosts:
        if child.violation("t", {"to": host}) is None:
            assert parent.violation("t", {"to": host}) is None, host
