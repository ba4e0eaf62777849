"""SPIFFE IDs and trust domains: only the canonical spelling of a valid ID is accepted."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ztgate.errors import InvalidInputError
from ztgate.identity.spiffe_id import (
    MAX_LENGTH,
    parse_spiffe_id,
    parse_trust_domain,
    trust_domain_id,
)

# The SPIFFE ID spec's grammar, as a whole-string match: the scheme, a trust
# domain of [a-z0-9._-] (at most 255 bytes, section 2.3), then path segments of
# [a-zA-Z0-9._-] that are neither empty, '.' nor '..'.
_SEGMENT = r"(?!\.\.?(?:/|\Z))[A-Za-z0-9._-]+"
SPEC = re.compile(rf"spiffe://[a-z0-9._-]{{1,255}}(?:/{_SEGMENT})*")

PREFIX = "spiffe://acme.example/"

VALID = [
    "spiffe://acme.example",
    "spiffe://acme.example/agent/mailer",
    "spiffe://acme.example/A/Mixed-Case_path.v2",
    "spiffe://a_b-c.1/x_y-z.1",
    "spiffe://acme.example/.../a",  # three dots is an ordinary segment
    "spiffe://acme.example/.hidden",
    "spiffe://127.0.0.1/agent",
    "spiffe://" + "d" * 255 + "/x",  # the longest trust domain
    PREFIX + "a" * (MAX_LENGTH - len(PREFIX)),  # exactly 2048 characters
]

INVALID = {
    # non-canonical spellings of a valid ID
    "upper-case trust domain": "spiffe://ACME.example/agent",
    "mixed-case trust domain": "spiffe://Acme.Example/agent",
    "upper-case scheme": "SPIFFE://acme.example/agent",
    "mixed-case scheme": "Spiffe://acme.example/agent",
    # path segments
    "trailing slash": "spiffe://acme.example/agent/",
    "bare trailing slash": "spiffe://acme.example/",
    "empty segment": "spiffe://acme.example//agent",
    "empty inner segment": "spiffe://acme.example/a//b",
    "dot segment": "spiffe://acme.example/./agent",
    "dot-dot segment": "spiffe://acme.example/agent/../admin",
    "trailing dot-dot": "spiffe://acme.example/agent/..",
    # URI components a SPIFFE ID must not have
    "query": "spiffe://acme.example/agent?x=1",
    "empty query": "spiffe://acme.example/agent?",
    "fragment": "spiffe://acme.example/agent#frag",
    "port": "spiffe://acme.example:8443/agent",
    "empty port": "spiffe://acme.example:/agent",
    "userinfo": "spiffe://user@acme.example/agent",
    "userinfo with password": "spiffe://user:pw@acme.example/agent",
    # scheme
    "https scheme": "https://acme.example/agent",
    "single slash": "spiffe:/acme.example/agent",
    "no slashes": "spiffe:acme.example/agent",
    "no scheme": "acme.example/agent",
    "spiffe with a space": "spiffe ://acme.example/agent",
    "empty": "",
    "scheme only": "spiffe://",
    "empty trust domain": "spiffe:///agent",
    # length
    "longer than 2048": PREFIX + "a" * (MAX_LENGTH - len(PREFIX) + 1),
    "trust domain longer than 255": "spiffe://" + "d" * 256 + "/x",
    # look-alikes and non-ASCII
    "cyrillic a in trust domain": "spiffe://acme.ex\u0430mple/agent",
    "accented trust domain": "spiffe://acm\u00e9.example/agent",
    "punycode-looking unicode": "spiffe://\u0430cme.example/agent",
    "fullwidth letter in path": "spiffe://acme.example/\uff41gent",
    "zero-width space": "spiffe://acme.example/ag\u200bent",
    "IPv6 literal": "spiffe://[::1]/agent",
    # percent-encoding
    "percent-encoded letter": "spiffe://acme.example/%61gent",
    "percent-encoded slash": "spiffe://acme.example/a%2Fb",
    "percent-encoded dot-dot": "spiffe://acme.example/%2e%2e/admin",
    "percent in trust domain": "spiffe://acme%2eexample/agent",
    # whitespace and control characters
    "leading space": " spiffe://acme.example/agent",
    "trailing space": "spiffe://acme.example/agent ",
    "space in path": "spiffe://acme.example/a b",
    "tab": "spiffe://acme.example/a\tb",
    "NUL": "spiffe://acme.example/agent\x00",
    "trailing newline": "spiffe://acme.example/agent\n",
    "newline in trust domain": "spiffe://acme.example\n/agent",
    "trailing CRLF": "spiffe://acme.example/agent\r\n",
    # other characters outside [a-zA-Z0-9._-]
    "plus": "spiffe://acme.example/a+b",
    "tilde": "spiffe://acme.example/~agent",
    "semicolon": "spiffe://acme.example/a;b",
    "backslash": "spiffe://acme.example/a\\b",
}


@pytest.mark.parametrize("text", VALID)
def test_valid_ids_parse_to_themselves(text: str) -> None:
    parsed = parse_spiffe_id(text)
    assert str(parsed) == text
    assert text.startswith(f"spiffe://{parsed.trust_domain.name}")
    assert str(parsed) == f"spiffe://{parsed.trust_domain.name}{parsed.path}"


def test_parsed_parts() -> None:
    parsed = parse_spiffe_id("spiffe://acme.example/agent/mailer")
    assert parsed.trust_domain.name == "acme.example"
    assert parsed.path == "/agent/mailer"
    assert parse_spiffe_id("spiffe://acme.example").path == ""


@pytest.mark.parametrize("text", list(INVALID.values()), ids=list(INVALID))
def test_invalid_ids_are_refused(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_spiffe_id(text)


@pytest.mark.parametrize("value", [None, 42, b"spiffe://acme.example/agent", ["spiffe://a/b"]])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(InvalidInputError):
        parse_spiffe_id(value)  # type: ignore[arg-type]


def test_the_message_quotes_the_refused_input() -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_spiffe_id("spiffe://ACME.example/agent")
    assert "ACME.example" in caught.value.message


# -- trust domains -----------------------------------------------------------------


@pytest.mark.parametrize("text", ["acme.example", "spiffe://acme.example"])
def test_trust_domain_with_and_without_the_prefix(text: str) -> None:
    domain = parse_trust_domain(text)
    assert domain.name == "acme.example"
    assert trust_domain_id(domain) == "spiffe://acme.example"


def test_trust_domain_of_255_characters_is_accepted() -> None:
    assert parse_trust_domain("d" * 255).name == "d" * 255


@pytest.mark.parametrize(
    "text",
    [
        "",
        "spiffe://",
        "ACME.example",
        "spiffe://ACME.example",
        "SPIFFE://acme.example",
        "acme.example/agent",
        "spiffe://acme.example/agent",
        "spiffe://acme.example/",
        "https://acme.example",
        "spiffe://spiffe://acme.example",
        "acme.example:443",
        "user@acme.example",
        "acme.ex\u0430mple",  # Cyrillic a
        "acm\u00e9.example",
        "acme%2eexample",
        "acme example",
        "acme.example\n",
        "spiffe://acme.example\n",
        pytest.param("d" * 256, id="256 characters"),  # longer than a URI host may be
    ],
)
def test_invalid_trust_domains_are_refused(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_trust_domain(text)


@pytest.mark.parametrize("value", [None, 42, b"acme.example"])
def test_non_string_trust_domains_are_refused(value: object) -> None:
    with pytest.raises(InvalidInputError):
        parse_trust_domain(value)  # type: ignore[arg-type]


# -- properties ----------------------------------------------------------------------

_schemes = st.sampled_from(["spiffe://", "SPIFFE://", "Spiffe://", "spiffe:/", "https://", ""])
_domains = st.text(alphabet="acmeAE09.-_:@%\u0430\n ", min_size=0, max_size=12)
_segments = st.text(alphabet="aZ09.-_%?#:@ \n\u00e9", min_size=0, max_size=6)
_candidates = st.builds(
    lambda scheme, domain, segments: scheme + domain + "".join("/" + s for s in segments),
    _schemes,
    _domains,
    st.lists(_segments, max_size=4),
)
_valid_ids = st.builds(
    lambda domain, segments: "spiffe://" + domain + "".join("/" + s for s in segments),
    st.from_regex(r"[a-z0-9._-]{1,20}", fullmatch=True),
    st.lists(st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,10}", fullmatch=True), max_size=5),
)


@given(st.one_of(_candidates, _valid_ids))
def test_whatever_is_accepted_round_trips(text: str) -> None:
    try:
        parsed = parse_spiffe_id(text)
    except InvalidInputError:
        return
    assert str(parsed) == text
    again = parse_spiffe_id(str(parsed))
    assert again == parsed
    assert str(again) == text


@given(_valid_ids)
def test_every_spec_valid_id_is_accepted(text: str) -> None:
    assert str(parse_spiffe_id(text)) == text


@given(st.one_of(_candidates, _valid_ids))
@example("spiffe://acme.example/agent\n")
@example("spiffe://acme.example\n")
def test_whatever_is_accepted_matches_the_spec_grammar(text: str) -> None:
    try:
        parse_spiffe_id(text)
    except InvalidInputError:
        return
    assert SPEC.fullmatch(text), f"accepted {text!r}, which the SPIFFE ID grammar forbids"
