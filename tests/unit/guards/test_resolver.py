"""Addresses an agent may never reach, and the system resolver."""

from __future__ import annotations

import ipaddress

import pytest

from ztgate.guards.resolver import ResolutionError, SystemResolver, literal, refusal


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
