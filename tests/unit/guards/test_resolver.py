"""Addresses an agent may never reach, and the system resolver."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.guards.resolver import (
    SPECIAL_PURPOSE,
    Address,
    ResolutionError,
    SystemResolver,
    literal,
    refusal,
)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00:ec2::254", "private"),
        ("100.100.100.200", "shared"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "a "),
        ("192.0.2.1", "private"),  # documentation
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:0001::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "private"),  # Teredo of 192.0.2.45
    ],
)
def test_refused_addresses(address: str, why: str | None) -> None:
    found = refusal(ipaddress.ip_address(address))
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found


@pytest.mark.parametrize(
    "address",
    [
        "192.0.0.192",  # Oracle Cloud Classic's metadata service
        "192.0.0.8",
        "192.88.99.1",
        "198.18.0.1",
        "203.0.113.7",
        "fec0::1",
        "64:ff9b:1::a9fe:a9fe",
        "3fff::1",
        "5f00::1",
        "2001:db8::1",
    ],
)
def test_special_purpose_addresses_are_refused_whatever_the_python(address: str) -> None:
    """Refused by the module's own list, not only by `ipaddress`'s (which varies by release)."""
    assert refusal(ipaddress.ip_address(address)) is not None


@given(st.sampled_from(SPECIAL_PURPOSE), st.integers(min_value=0))
def test_every_special_purpose_block_is_refused_throughout(
    block: ipaddress.IPv4Network | ipaddress.IPv6Network, offset: int
) -> None:
    address = block[offset % block.num_addresses]
    if isinstance(address, ipaddress.IPv6Address) and address.teredo is not None:
        # Teredo (2001::/32, inside 2001::/23) is judged by the IPv4 address it carries.
        assert refusal(address) == refusal(address.teredo[1])
    else:
        assert refusal(address) is not None


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("acme.example", None),
        ("deadbeef.example", None),
        ("", None),
    ],
)
def test_literal_addresses_in_every_spelling(host: str, address: str | None) -> None:
    found = literal(host)
    assert (str(found) if found is not None else None) == address


async def test_the_system_resolver_resolves_localhost_and_caches() -> None:
    resolver = SystemResolver(timeout=5)
    found = await resolver.resolve("localhost")
    assert found and all(a.is_loopback for a in found)
    assert await resolver.resolve("localhost") is found  # from the cache


async def test_the_system_resolver_fails_closed() -> None:
    resolver = SystemResolver(timeout=5, cache_seconds=0)
    with pytest.raises(ResolutionError, match="does not resolve"):
        await resolver.resolve("name.invalid")
    with pytest.raises(ResolutionError):
        await resolver.resolve("bad..name")


def _answer(address: str) -> list[Any]:
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))]


async def test_lookups_run_off_the_default_executor() -> None:
    """A name that hangs holds the resolver's threads, never the loop's (audit writes use it)."""
    loop = asyncio.get_running_loop()

    class Refusing(ThreadPoolExecutor):
        def submit(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the default executor was used")

    refusing = Refusing(1)
    loop.set_default_executor(refusing)
    try:
        found = await SystemResolver(timeout=5, cache_seconds=0).resolve("localhost")
    finally:
        loop.set_default_executor(ThreadPoolExecutor(2))
        refusing.shutdown()
    assert found and all(a.is_loopback for a in found)


async def test_one_lookup_per_name_however_many_ask() -> None:
    release = threading.Event()
    asked: list[str] = []

    def lookup(host: str, *args: Any) -> list[Any]:
        asked.append(host)
        release.wait(5)
        return _answer("93.184.216.34")

    resolver = SystemResolver(timeout=5, lookup=lookup)
    waiting = [asyncio.create_task(resolver.resolve("example.com")) for _ in range(10)]
    await asyncio.sleep(0.05)
    release.set()
    answers = await asyncio.gather(*waiting)
    assert asked == ["example.com"]
    assert {str(a) for found in answers for a in found} == {"93.184.216.34"}


async def test_lookups_are_bounded_and_a_hung_one_counts_until_its_thread_ends() -> None:
    release = threading.Event()

    def hang(host: str, *args: Any) -> list[Any]:
        release.wait(5)
        raise socket.gaierror(socket.EAI_AGAIN, "temporary failure")

    resolver = SystemResolver(timeout=0.05, max_lookups=2, lookup=hang)
    for host in ("a.example", "b.example"):
        with pytest.raises(ResolutionError, match="no answer within"):
            await resolver.resolve(host)
    assert resolver.running == 2  # given up on, still holding their threads
    with pytest.raises(ResolutionError, match="busy"):  # refused at once, fail closed
        await resolver.resolve("c.example")
    release.set()
    for _ in range(100):
        if resolver.running == 0:
            break
        await asyncio.sleep(0.01)
    assert resolver.running == 0
    with pytest.raises(ResolutionError, match="does not resolve"):
        await resolver.resolve("c.example")


async def test_a_name_that_does_not_resolve_is_remembered_for_a_while() -> None:
    asked: list[str] = []

    def fail(host: str, *args: Any) -> list[Any]:
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "unknown name")

    resolver = SystemResolver(timeout=5, failure_seconds=60, lookup=fail)
    for _ in range(3):
        with pytest.raises(ResolutionError, match="does not resolve"):
            await resolver.resolve("gone.example")
    assert asked == ["gone.example"]
    uncached = SystemResolver(timeout=5, cache_seconds=0, lookup=fail)
    for _ in range(2):
        with pytest.raises(ResolutionError):
            await uncached.resolve("gone.example")
    assert asked == ["gone.example"] * 3


# -- the shortcuts: a name ruled out without the parsers, cached readings --------------------

_LITERAL_CHARS = "0123456789abcdefxABCDEFX.:[]%gz-"


def _literal_reference(host: str) -> Address | None:
    """`literal` as it was: both parsers tried on every text."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if not text or not all(c in "0123456789abcdefxABCDEFX." for c in text):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


_hosts = st.one_of(
    st.text(alphabet=_LITERAL_CHARS, max_size=24),
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.ip_addresses(v=6).map(lambda a: f"{a}%eth0"),
    st.integers(min_value=0, max_value=2**33).map(str),
    st.integers(min_value=0, max_value=2**32).map(hex),
    st.text(max_size=12),
    st.text(alphabet=_LITERAL_CHARS, min_size=250, max_size=300),
)


@settings(max_examples=600, deadline=None)
@given(_hosts)
def test_literal_is_the_parsers_answer(host: str) -> None:
    """The prefilter never hides an address, and the cache answers as the parsers (twice)."""
    expected = _literal_reference(host)
    for _ in range(2):
        found = literal(host)
        assert found == expected
        assert type(found) is type(expected)


@pytest.mark.parametrize(
    "host", ["::1", "[::1]", "fe80::1%eth0", "127.1", "0x7f.0.0.1", "2130706433", "0177.0.0.1"]
)
def test_literal_reads_addresses_the_prefilter_lets_through(host: str) -> None:
    """Colon-bearing and numeric texts still reach the parsers (a prefilter on digits would not)."""
    assert literal(host) is not None
    assert literal(host) == _literal_reference(host)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.ip_addresses(), st.ip_addresses(v=6).map(lambda a: a.ipv4_mapped or a)))
def test_refusal_cached_is_uncached(address: Address) -> None:
    """The cached refusal is the uncached one's, for v4 and v6 alike (same integers apart)."""
    uncached = refusal.__wrapped__  # type: ignore[attr-defined]
    assert refusal(address) == uncached(address)
    other: Address
    if isinstance(address, ipaddress.IPv4Address):
        other = ipaddress.IPv6Address(int(address))
    else:
        other = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    assert refusal(other) == uncached(other)
    assert refusal(address) == uncached(address)


def test_refusal_keeps_v4_and_v6_of_one_integer_apart() -> None:
    """0.0.0.1 (in 0.0.0.0/8, private) and ::1 (loopback) share an integer, not an answer."""
    assert refusal(ipaddress.IPv4Address(1)) == "a private address"
    assert refusal(ipaddress.IPv6Address(1)) == "a loopback address"
    assert refusal(ipaddress.IPv4Address(1)) == "a private address"
