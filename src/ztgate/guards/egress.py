"""Egress rules: the hosts a call's arguments name, and whether the agent may go there.

The `egress` check collects the destination hosts of a call — of URLs and
e-mail addresses given as whole arguments, and of those inside free text —
as the `DESTINATION_HOSTS` fact (lower case, IDNA), and denies a call that:

- names a host it cannot read safely (a URL whose authority holds a
  backslash, a host that is not a valid name);
- names the machine itself or a cloud metadata service, or an address in
  any spelling that is private, loopback, link-local, shared, reserved ...
  (guards/resolver.py), anywhere in the arguments;
- gives as a whole argument a URL whose host resolves to such an address
  (the name is resolved now, with a timeout; a name that does not resolve
  is refused: fail closed — the tool would resolve it again, so this
  catches what the gateway can see, and the forwarder never follows
  redirects at all);
- gives as a whole argument a URL or an e-mail address outside the allowed
  domains: the task's (its scope's `domains` limits for this tool) and the
  agent's (`[guards.egress] agent_domains`, else `allowed_domains`); each
  list that exists must allow the host.

Hosts inside free text are reported but not resolved (a link in a message
body is not fetched by the tool) and not held to the allow-lists. Reasons
name the argument and what is wrong, not the host.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ztgate.guards import facts as fact
from ztgate.guards.paths import leaves, pointer, shown
from ztgate.guards.resolver import LOCAL_NAMES, ResolutionError, Resolver, literal, refusal
from ztgate.guards.values import EMAIL, MAX_VALUE_CHARS, URL, clean, shared_scan, whole
from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext
from ztgate.tools.flow import UNTRACKED, covers, parse_pattern

NAME = "egress"
AGENT_FACT = "principal.spiffe_id"  # set by the `authenticate` check
WARRANT_FACT = "warrant.verified"  # set by the `warrant` check
MAX_HOSTS = 256
_UNSAFE_HOST = re.compile(r"[\s/\\@%]")


@dataclass(frozen=True, slots=True)
class Destination:
    """A host an argument points at."""

    pointer: str
    host: str | None  # None: the value names a host that cannot be read safely
    kind: str  # url | email
    whole: bool  # the argument is this URL or address (not text around it)


def host_of(value: str, kind: str) -> str | None:
    """The host of a URL or the domain of an e-mail address: lower case, IDNA; None if unsafe.

    Read once per exact (value, kind) for values of up to `MAX_VALUE_CHARS`
    (a bounded cache: the same addresses recur call after call).
    """
    if len(value) <= MAX_VALUE_CHARS:
        return _cached_host_of(value, kind)
    return _host_of(value, kind)


def _host_of(value: str, kind: str) -> str | None:
    if kind == URL:
        rest = value.split("://", 1)[1] if "://" in value else value
        authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        if "\\" in authority:
            return None  # WHATWG parsers end the host at a backslash; urlsplit does not
        try:
            host = urlsplit(value).hostname
        except ValueError:
            return None
    else:
        host = value.rsplit("@", 1)[-1]
    if not host:
        return None
    host = host.strip().rstrip(".").lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if _UNSAFE_HOST.search(host) or len(host) > 253:
        return None
    return host


_cached_host_of = functools.lru_cache(maxsize=4096)(_host_of)


def destinations(arguments: Any) -> list[Destination]:
    """The hosts named in `arguments`: whole URLs and addresses, and those inside text."""
    found: list[Destination] = []
    for path, value in leaves(arguments):
        if not isinstance(value, str) or ("://" not in value and "@" not in value):
            continue
        where = pointer(path)
        single = whole(value)
        if single is not None and single.kind in (URL, EMAIL):
            text = clean(value).strip()
            found.append(Destination(where, host_of(text, single.kind), single.kind, True))
            continue
        scan = shared_scan(clean(value))
        for item in scan.urls():
            found.append(
                Destination(where, host_of(scan.text[item.start : item.end], URL), URL, False)
            )
        for item in scan.emails_and_handles():
            if item.value.kind == EMAIL:
                domain = host_of(scan.text[item.start : item.end], EMAIL)
                found.append(Destination(where, domain, EMAIL, False))
        if len(found) > MAX_HOSTS:
            break
    return found


def covered(domains: Sequence[str], host: str) -> bool:
    """True if `host` is one of `domains` or under a `*.` wildcard of them."""
    for allowed in domains:
        if allowed.startswith("*."):
            if host.endswith(allowed[1:]):
                return True
        elif host == allowed:
            return True
    return False


def is_local_name(host: str) -> bool:
    """True for names of the machine itself or of a cloud metadata service."""
    return host in LOCAL_NAMES or host.endswith(".localhost")


def task_domains(scope: Any, tool: str) -> tuple[str, ...] | None:
    """The domains the task's scope allows for `tool` (its `domains` limits), or None."""
    tools = getattr(scope, "tools", None)
    allowed = tools.get(tool) if type(tools) is dict or isinstance(tools, Mapping) else None
    if allowed is None:
        return None
    domains: list[str] = []
    for limit in allowed.limits.values():
        if limit.domains is not None:
            domains.extend(limit.domains)
    return tuple(domains) if domains else None


class EgressCheck:
    """Pre-call check: destination hosts allowed, and never the inside of the network."""

    name = NAME

    def __init__(
        self,
        resolver: Resolver | None,
        *,
        allowed_domains: Sequence[str] = (),
        agent_domains: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Resolve URL hosts with `resolver` (None: literal addresses only); the allow-lists."""
        self._resolver = resolver
        self._allowed = tuple(d.lower() for d in allowed_domains)
        self._agents = {a: tuple(d.lower() for d in ds) for a, ds in (agent_domains or {}).items()}

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow with the destination hosts as a fact, or deny saying which argument and why."""
        found = destinations(call.arguments)
        untracked = _untracked(ctx)
        if untracked:
            # Declared by the tool's flow as no destination of its own, e.g.
            # an MCP server's resource URI, read within that server.
            found = [d for d in found if not _covered_by(untracked, d.pointer)]
        if not found:
            return Verdict(NAME, Outcome.ALLOW, "no destination hosts in the arguments")
        hosts = sorted({d.host for d in found if d.host is not None})[:MAX_HOSTS]
        facts: dict[str, Any] = {fact.DESTINATION_HOSTS: hosts}
        lists = self._lists(call, ctx)
        to_resolve: dict[str, list[Destination]] = {}
        for item in found:
            why = self._static(item, lists)
            if why is not None:
                return Verdict(NAME, Outcome.DENY, f"argument {shown(item.pointer)} {why}", facts)
            host = item.host
            if item.whole and item.kind == URL and host is not None and literal(host) is None:
                to_resolve.setdefault(host, []).append(item)
        if to_resolve and self._resolver is not None:
            why_by_host = await self._resolve_all(list(to_resolve))
            for host, why in why_by_host.items():
                if why is not None:
                    where = shown(to_resolve[host][0].pointer)
                    return Verdict(NAME, Outcome.DENY, f"argument {where} {why}", facts)
        return Verdict(NAME, Outcome.ALLOW, f"{len(hosts)} destination hosts allowed", facts)

    def _lists(self, call: ToolCall, ctx: CallContext) -> list[tuple[str, tuple[str, ...]]]:
        lists: list[tuple[str, tuple[str, ...]]] = []
        warrant = ctx.facts.get(WARRANT_FACT)
        task = task_domains(getattr(warrant, "scope", None), call.tool)
        if task is not None:
            lists.append(("the task's", task))
        agent = ctx.facts.get(AGENT_FACT)
        own = self._agents.get(agent) if isinstance(agent, str) else None
        if own is not None:
            lists.append(("the agent's", own))
        elif self._allowed:
            lists.append(("the gateway's", self._allowed))
        return lists

    @staticmethod
    def _static(item: Destination, lists: list[tuple[str, tuple[str, ...]]]) -> str | None:
        """What is wrong with a destination without resolving anything, or None."""
        host = item.host
        if host is None:
            return "names a host that cannot be read safely"
        if is_local_name(host):
            return "names this machine or a cloud metadata service"
        address = literal(host)
        if address is not None:
            why = refusal(address)
            if why is not None:
                return f"names {why}"
        if item.whole:
            for whose, domains in lists:
                if not covered(domains, host):
                    return f"names a host outside {whose} allowed domains"
        return None

    async def _resolve_all(self, hosts: list[str]) -> dict[str, str | None]:
        answers = await asyncio.gather(*(self._resolve(host) for host in hosts))
        return dict(zip(hosts, answers, strict=True))

    async def _resolve(self, host: str) -> str | None:
        assert self._resolver is not None  # noqa: S101 - checked by the caller
        try:
            addresses = await self._resolver.resolve(host)
        except ResolutionError as exc:
            return f"names a host that cannot be checked: {exc}"
        for address in addresses:
            why = refusal(address)
            if why is not None:
                return f"names a host that resolves to {why}"
        return None


def _untracked(ctx: CallContext) -> list[tuple[str, ...]]:
    flow = getattr(ctx.tool.spec, "flow", None) if ctx.tool is not None else None
    if flow is None or not flow.arguments:
        return []
    return [
        parse_pattern(p, "arguments") for p, role in flow.arguments.items() if role == UNTRACKED
    ]


def _covered_by(patterns: list[tuple[str, ...]], pointer: str) -> bool:
    path = parse_pattern(pointer, "argument") if pointer.startswith("/") else ()
    return any(covers(tokens, path) for tokens in patterns)
