"""Reading proxy request heads: the request line, headers, authority; strict, never a guess."""

from __future__ import annotations

import base64
import ipaddress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ztgate.egress.request import (
    Authority,
    RequestError,
    basic_credentials,
    parse_authority,
    parse_head,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com:443", Authority("example.com", 443)),
        ("EXAMPLE.com.:8080", Authority("example.com", 8080)),
        ("127.0.0.1:80", Authority("127.0.0.1", 80)),
        ("[::1]:443", Authority("::1", 443)),
        ("[0:0:0:0:0:ffff:7f00:1]:443", Authority("::ffff:7f00:1", 443)),
        ("127.1:80", Authority("127.1", 80)),  # a literal spelling: the decision reads it
        ("xn--bcher-kva.example:1", Authority("xn--bcher-kva.example", 1)),
    ],
)
def test_authorities_that_parse(text: str, expected: Authority) -> None:
    assert parse_authority(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "example.com",  # no port
        "example.com:0",
        "example.com:65536",
        "example.com:+80",
        "example.com:8O",
        "user@example.com:443",
        "example.com/x:443",
        "exa mple.com:443",
        "bücher.example:443",
        "[::1:443",
        "[not-v6]:443",
        "[::1]443",
        "-leading.example:443",
        "a..b:443",
        "example.com\\@evil:443",
        "%65xample.com:443",
        "a" * 254 + ":443",
    ],
)
def test_authorities_that_do_not(text: str) -> None:
    with pytest.raises(RequestError):
        parse_authority(text)


def test_a_default_port_for_plain_http() -> None:
    assert parse_authority("example.com", default_port=80) == Authority("example.com", 80)


_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_names = st.lists(_labels, min_size=1, max_size=4).map(".".join)
_ports = st.integers(min_value=1, max_value=65535)


@given(_names, _ports)
def test_names_and_ports_round_trip(host: str, port: int) -> None:
    parsed = parse_authority(f"{host}:{port}")
    assert parsed.port == port
    assert parsed.host == (str(ipaddress.ip_address(host)) if _is_ipv4(host) else host)
    assert parse_authority(str(parsed)) == parsed


@given(st.ip_addresses(v=6), _ports)
def test_ipv6_round_trips(address: ipaddress.IPv6Address, port: int) -> None:
    parsed = parse_authority(f"[{address}]:{port}")
    assert parsed == Authority(str(address), port)
    assert parse_authority(str(parsed)) == parsed


@given(st.text(max_size=80))
@example("a:1\r\nHost: b")
@example("[::1]:1]")
def test_anything_else_parses_to_a_plain_host_or_is_refused(text: str) -> None:
    try:
        parsed = parse_authority(text)
    except RequestError:
        return
    assert 1 <= parsed.port <= 65535
    assert parsed.host.isascii() and parsed.host == parsed.host.lower()
    assert not any(c in parsed.host for c in "@/\\?#% \t\r\n")


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def test_connect() -> None:
    request = parse_head(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
    assert request.tunnel and request.method == "CONNECT"
    assert request.destination == Authority("api.example.com", 443)


def test_absolute_http_is_rewritten_to_origin_form_without_hop_by_hop_fields() -> None:
    request = parse_head(
        b"POST http://Example.com/a/b?c=d HTTP/1.1\r\nHost: example.com\r\n"
        b"Proxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\n"
        b"Connection: keep-alive\r\nContent-Length: 2\r\n\r\n"
    )
    assert not request.tunnel
    assert request.destination == Authority("example.com", 80)
    head = request.upstream_head()
    assert head.startswith(b"POST /a/b?c=d HTTP/1.1\r\n")
    assert b"Host: example.com\r\n" in head and b"Content-Length: 2\r\n" in head
    assert b"Proxy-" not in head and b"keep-alive" not in head
    assert head.endswith(b"Connection: close\r\n\r\n")


def test_the_host_header_must_name_the_urls_host() -> None:
    parse_head(b"GET http://a.example/ HTTP/1.1\r\nHost: A.example:80\r\n\r\n")
    parse_head(b"GET http://a.example:8080/ HTTP/1.1\r\nHost: a.example:8080\r\n\r\n")
    for host in (b"b.example", b"a.example:8080", b"", b"a.example\xff"):
        with pytest.raises(RequestError, match="Host header"):
            parse_head(b"GET http://a.example/ HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        (b"Host: a.example\r\nHost: internal.example\r\n", "more than one Host"),
        (b"Content-Length: 2\r\nContent-Length: 40\r\n", "more than one Content-Length"),
        (b"Transfer-Encoding: chunked\r\n", "Transfer-Encoding"),
        (b"transfer-encoding: gzip, chunked\r\n", "Transfer-Encoding"),
    ],
)
def test_nothing_an_origin_could_read_two_ways_is_relayed(extra: bytes, why: str) -> None:
    """A second Host (another virtual host) or a chunked body whose header is not forwarded."""
    with pytest.raises(RequestError, match=why):
        parse_head(b"POST http://a.example/ HTTP/1.1\r\n" + extra + b"\r\n")


def test_a_url_without_a_path() -> None:
    request = parse_head(b"GET http://example.com:8080?x=1 HTTP/1.0\r\n\r\n")
    assert request.target == b"/?x=1" and request.destination.port == 8080


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"GET / HTTP/1.1\r\n\r\n",  # origin-form: not a proxy request
        b"GET https://example.com/ HTTP/1.1\r\n\r\n",  # https: CONNECT only
        b"GET ftp://example.com/ HTTP/1.1\r\n\r\n",
        b"GET http://example.com/ HTTP/2\r\n\r\n",
        b"GET  http://example.com/ HTTP/1.1\r\n\r\n",
        b"G(T http://example.com/ HTTP/1.1\r\n\r\n",
        b"GET http://example.com/#frag HTTP/1.1\r\n\r\n",
        b"GET http://ex\xc3\xa4mple.com/ HTTP/1.1\r\n\r\n",
        b"GET http://example.com/\nX: y HTTP/1.1\r\n\r\n",
        b"GET http://example.com/\x7f HTTP/1.1\r\n\r\n",
        b"CONNECT example.com HTTP/1.1\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\n folded: value\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    ],
)
def test_heads_that_are_refused(head: bytes) -> None:
    with pytest.raises(RequestError):
        parse_head(head)


def test_basic_credentials() -> None:
    token = base64.b64encode(b"files.1:pa:ss")
    assert basic_credentials(b"Basic " + token) == ("files.1", "pa:ss")
    assert basic_credentials(b"basic  " + token) == ("files.1", "pa:ss")
    assert basic_credentials(None) is None
    assert basic_credentials(b"Bearer " + token) is None
    assert basic_credentials(b"Basic !!!") is None
    assert basic_credentials(b"Basic " + base64.b64encode(b"no-colon")) is None
    assert basic_credentials(b"Basic " + base64.b64encode(b"\xff:x")) is None


_heads = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda method, target, extra: method + b" " + target + b" HTTP/1.1\r\n" + extra + b"\r\n",
        st.sampled_from([b"CONNECT", b"GET", b"POST", b"G\x00T"]),
        st.binary(max_size=60),
        st.binary(max_size=60),
    ),
)


@given(_heads)
@example(b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n")
@example(b"GET http://[::1]:80/ HTTP/1.1\r\nHost: [::1]\r\n\r\n")
def test_any_head_parses_to_a_checked_destination_or_is_refused(head: bytes) -> None:
    try:
        request = parse_head(head)
    except RequestError as exc:
        assert exc.reason and "\n" not in exc.reason
        return
    assert parse_authority(str(request.destination)) == request.destination
    if not request.tunnel:
        assert request.target.startswith(b"/")
        lines = request.upstream_head()[:-4].split(b"\r\n")
        assert all(b"\r" not in line and b"\n" not in line and line for line in lines)
