"""Whether a connection may go to a destination, and to which address.

The same rules as the egress guard (guards/egress.py, guards/resolver.py),
applied to the destination of a connection instead of an argument:

  (1) the host is not a name of this machine or of a metadata service;
  (2) an explicit test destination (`host:port`, per enclave) may be a
      loopback address — nothing else about it is relaxed;
  (3) every allow-list that exists (the enclave's, always; the agent's and
      the task's when given) covers the host, with the guard's domain
      patterns (`acme.example`, `*.acme.example`);
  (4) the host, resolved now, has only acceptable addresses (no private,
      loopback, link-local, metadata ... address, in any spelling);
  (5) the connection goes to the address resolved in (4), never to the name
      again, so a name that rebinds after the check gains nothing.

A refusal is a value with a one-line reason; resolution errors refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ztgate.egress.request import Authority, RequestError, parse_authority
from ztgate.guards.egress import covered, is_local_name
from ztgate.guards.resolver import Address, ResolutionError, Resolver, literal, refusal


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who a connection is for: the enclave (an MCP server's name), and its agent and task."""

    enclave: str
    agent: str | None = None
    task_id: str | None = None


@dataclass(frozen=True, slots=True)
class EgressRules:
    """Where an enclave's connections may go."""

    allowed_domains: tuple[str, ...] = ()  # empty: nowhere
    agent_domains: tuple[str, ...] | None = None  # None: no list for the agent
    task_domains: tuple[str, ...] | None = None  # None: no list for the task
    test_destinations: frozenset[Authority] = frozenset()  # loopback allowed, for tests

    @classmethod
    def build(
        cls,
        allowed_domains: Sequence[str],
        *,
        agent_domains: Sequence[str] | None = None,
        task_domains: Sequence[str] | None = None,
        test_destinations: Sequence[str] = (),
    ) -> EgressRules:
        """Rules from lists of domain patterns and `host:port` test destinations.

        Raises:
            ValueError: a test destination is not `host:port`.
        """

        def lower(domains: Sequence[str] | None) -> tuple[str, ...] | None:
            return None if domains is None else tuple(d.strip().lower() for d in domains)

        try:
            tests = frozenset(parse_authority(text) for text in test_destinations)
        except RequestError as exc:
            raise ValueError(f"test destination: {exc.reason}") from exc
        return cls(lower(allowed_domains) or (), lower(agent_domains), lower(task_domains), tests)


@dataclass(frozen=True, slots=True)
class EgressDecision:
    """Allowed (with the address to connect to), or refused with the reason."""

    allowed: bool
    reason: str
    address: Address | None = None

    @classmethod
    def refuse(cls, reason: str) -> EgressDecision:
        """A refusal saying `reason`."""
        return cls(False, reason)


async def decide(destination: Authority, rules: EgressRules, resolver: Resolver) -> EgressDecision:
    """Where a connection to `destination` may go under `rules` (steps in the module doc)."""
    host = destination.host
    test = destination in rules.test_destinations
    # (1) names of this machine or of a metadata service, before any lookup.
    if is_local_name(host) and not test:
        return EgressDecision.refuse("the host is this machine or a cloud metadata service")
    # (1) and (4) for an address given as such, in any spelling.
    address = literal(host)
    if address is not None:
        why = _refusal(address, test)
        if why is not None:
            return EgressDecision.refuse(f"the host is {why}")
    # (3) the allow-lists (an explicit test destination is its own allow-list).
    if not test:
        for whose, domains in _lists(rules):
            if not covered(domains, host):
                return EgressDecision.refuse(f"the host is outside {whose} allowed domains")
    # (4) every address the host resolves to.
    try:
        addresses = (address,) if address is not None else await resolver.resolve(host)
    except ResolutionError as exc:
        return EgressDecision.refuse(f"the host cannot be checked: {exc}")
    if not addresses:
        return EgressDecision.refuse("the host cannot be checked: it resolves to no IP address")
    for resolved in addresses:
        why = _refusal(resolved, test)
        if why is not None:
            return EgressDecision.refuse(f"the host resolves to {why}")
    # (5) connect to what was checked.
    return EgressDecision(True, "test destination" if test else "allowed", addresses[0])


def _refusal(address: Address, test: bool) -> str | None:
    why = refusal(address)
    # (2) a test destination may be loopback, and only loopback.
    return None if why is not None and test and address.is_loopback else why


def _lists(rules: EgressRules) -> list[tuple[str, tuple[str, ...]]]:
    lists = [("the enclave's", rules.allowed_domains)]
    if rules.agent_domains is not None:
        lists.append(("the agent's", rules.agent_domains))
    if rules.task_domains is not None:
        lists.append(("the task's", rules.task_domains))
    return lists
