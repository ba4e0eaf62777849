"""Where a connection may go: allow-lists, then every address the host resolves to."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from ztgate.egress.decision import EgressRules, decide
from ztgate.egress.request import Authority
from ztgate.guards.resolver import Address, ResolutionError

PUBLIC = ipaddress.ip_address("93.184.215.14")
PUBLIC_V6 = ipaddress.ip_address("2606:2800:21f:cb07:6820:80da:af6b:8b2c")


class Table:
    def __init__(self, table: dict[str, Sequence[Address]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(self, host: str) -> Sequence[Address]:
        self.asked.append(host)
        if host not in self.table:
            raise ResolutionError("it does not resolve (test)")
        return self.table[host]


RESOLVER = Table(
    {
        "api.example.com": [PUBLIC, PUBLIC_V6],
        "sub.example.org": [PUBLIC],
        "example.org": [PUBLIC],
        "mixed.example.com": [PUBLIC, ipaddress.ip_address("10.0.0.5")],
        "meta.example.com": [ipaddress.ip_address("169.254.169.254")],
        "mapped.example.com": [ipaddress.ip_address("::ffff:127.0.0.1")],
        "empty.example.com": [],
        "localhost": [ipaddress.ip_address("127.0.0.1")],
        "test.internal": [ipaddress.ip_address("127.0.0.1")],
    }
)
RULES = EgressRules.build(
    ["api.example.com", "*.example.org", "*.example.com"],
    test_destinations=["127.0.0.1:8080", "test.internal:9000", "localhost:7000"],
)


async def _decide(target: str, rules: EgressRules = RULES) -> tuple[bool, str, str | None]:
    host, _, port = target.rpartition(":")
    decision = await decide(Authority(host.strip("[]"), int(port)), rules, RESOLVER)
    return decision.allowed, decision.reason, str(decision.address) if decision.address else None


async def test_an_allowed_host_connects_to_the_address_it_resolved_to() -> None:
    assert await _decide("api.example.com:443") == (True, "allowed", str(PUBLIC))
    assert (await _decide("sub.example.org:443"))[0]


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("example.org:443", "outside the enclave's allowed domains"),  # *. is subdomains only
        ("evil.test:443", "outside the enclave's allowed domains"),
        ("localhost:443", "this machine"),
        ("metadata.google.internal:80", "metadata"),
        ("x.localhost:80", "this machine"),
        ("127.0.0.1:8081", "loopback"),  # a test destination is one port
        ("127.1:80", "loopback"),
        ("2130706433:80", "loopback"),
        ("0x7f.0.0.1:80", "loopback"),
        ("::1:80", "loopback"),
        ("::ffff:127.0.0.1:80", "loopback"),
        ("10.0.0.1:80", "private"),
        ("169.254.169.254:80", "link-local"),
        ("100.100.100.200:80", "shared"),
        ("0.0.0.0:80", "unspecified"),
        ("mixed.example.com:443", "resolves to a private address"),
        ("meta.example.com:80", "resolves to a link-local"),
        ("mapped.example.com:80", "resolves to a loopback"),
        ("unknown.example.com:443", "cannot be checked"),
        ("empty.example.com:443", "cannot be checked"),
    ],
)
async def test_refusals(target: str, reason: str) -> None:
    allowed, why, address = await _decide(target)
    assert not allowed and address is None
    assert reason in why


async def test_test_destinations_may_be_loopback_and_only_that() -> None:
    assert await _decide("127.0.0.1:8080") == (True, "test destination", "127.0.0.1")
    assert await _decide("test.internal:9000") == (True, "test destination", "127.0.0.1")
    assert await _decide("localhost:7000") == (True, "test destination", "127.0.0.1")
    private = EgressRules.build([], test_destinations=["10.0.0.1:80"])
    allowed, why, _ = await _decide("10.0.0.1:80", private)
    assert not allowed and "private" in why


async def test_no_allowed_domains_means_nowhere() -> None:
    allowed, why, _ = await _decide("api.example.com:443", EgressRules.build([]))
    assert not allowed and "outside the enclave's" in why


async def test_every_list_that_exists_must_allow_the_host() -> None:
    rules = EgressRules.build(
        ["*.example.com"], agent_domains=["api.example.com"], task_domains=["other.example.com"]
    )
    allowed, why, _ = await _decide("api.example.com:443", rules)
    assert not allowed and "the task's" in why
    rules = EgressRules.build(["*.example.com"], agent_domains=[], task_domains=None)
    allowed, why, _ = await _decide("api.example.com:443", rules)
    assert not allowed and "the agent's" in why
    rules = EgressRules.build(["API.example.com"], agent_domains=["*.EXAMPLE.com"])
    assert (await _decide("api.example.com:443", rules))[0]


async def test_lists_are_checked_before_anything_is_resolved() -> None:
    RESOLVER.asked.clear()
    await _decide("evil.test:443")
    assert RESOLVER.asked == []


def test_a_test_destination_must_be_host_and_port() -> None:
    with pytest.raises(ValueError, match="test destination"):
        EgressRules.build([], test_destinations=["127.0.0.1"])
