"""Egress: destination hosts, allow-lists, and never the inside of the network."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.errors import UpstreamError
from ztgate.forward import Forwarder
from ztgate.guards import egress, facts
from ztgate.guards.egress import NAME, EgressCheck, covered, destinations, host_of
from ztgate.guards.resolver import Address, ResolutionError, SystemResolver
from ztgate.guards.values import MAX_VALUE_CHARS
from ztgate.models import Outcome, Verdict
from ztgate.pipeline import CallContext
from ztgate.tasks.scope import parse_scope
from ztgate.testing import FrozenClock, make_call, make_tool
from ztgate.tools.catalog import Catalog
from ztgate.tools.flow import ToolFlow

# A resolver the test controls: DNS rebinding-style names that resolve inside.
ANSWERS = {
    "public.example": ["93.184.216.34"],
    "rebind.example": ["93.184.216.34", "127.0.0.1"],  # one good answer is not enough
    "metadata.example": ["169.254.169.254"],
    "v6.example": ["::1"],
    "intranet.example": ["10.0.0.5"],
    "mapped.example": ["::ffff:10.0.0.5"],
}


class FakeResolver:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(self, host: str) -> Sequence[Address]:
        self.asked.append(host)
        if host == "slow.example":
            await asyncio.sleep(10)
        if host not in ANSWERS:
            raise ResolutionError("it does not resolve (gaierror)")
        return [ipaddress.ip_address(a) for a in ANSWERS[host]]


CATALOG = Catalog(
    [
        make_tool("fetch"),
        make_tool("send_email"),
        make_tool(
            "files.resources.read",
            flow=ToolFlow.from_json({"arguments": {"/uri": "untracked"}}),
        ),
    ]
)


async def run(
    arguments: dict[str, Any],
    clock: FrozenClock,
    *,
    check: EgressCheck | None = None,
    tool: str = "fetch",
    scope: dict[str, Any] | None = None,
    agent: str | None = None,
) -> Verdict:
    ctx = CallContext(clock, tool=CATALOG.get(tool))
    if scope is not None:
        ctx.facts["warrant.verified"] = SimpleNamespace(scope=parse_scope(scope))
    if agent is not None:
        ctx.facts["principal.spiffe_id"] = agent
    verdict = await (check or EgressCheck(FakeResolver()))(make_call(tool, arguments), ctx)
    assert verdict.check == NAME
    return verdict


async def test_public_destinations_are_allowed_and_reported(clock: FrozenClock) -> None:
    verdict = await run(
        {
            "url": "https://PUBLIC.example/a",
            "note": "cc bob@Acme.Example and see http://docs.example/x",
        },
        clock,
    )
    assert verdict.outcome is Outcome.ALLOW
    assert verdict.facts[facts.DESTINATION_HOSTS] == [
        "acme.example",
        "docs.example",
        "public.example",
    ]


async def test_no_hosts_no_facts(clock: FrozenClock) -> None:
    verdict = await run({"q": "weather in lisbon", "n": 3}, clock)
    assert verdict.outcome is Outcome.ALLOW and verdict.facts == {}


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://rebind.example/", "resolves to a loopback address"),
        ("http://metadata.example/latest/meta-data", "resolves to a link-local address"),
        ("http://v6.example/", "resolves to a loopback address"),
        ("http://intranet.example/", "resolves to a private address"),
        ("http://mapped.example/", "resolves to a private address"),
        ("http://unknown.example/", "cannot be checked: it does not resolve"),
        ("http://localhost:8080/admin", "this machine or a cloud metadata service"),
        ("http://LOCALHOST./", "this machine or a cloud metadata service"),
        ("http://app.localhost/", "this machine or a cloud metadata service"),
        ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata service"),
        ("http://169.254.169.254/latest/meta-data/", "names a link-local address"),
        ("http://127.1/", "names a loopback address"),
        ("http://2130706433/", "names a loopback address"),
        ("http://0x7f.0.0.1/", "names a loopback address"),
        ("http://[::1]:8080/", "names a loopback address"),
        ("http://[::ffff:169.254.169.254]/", "names a link-local address"),
        ("http://10.0.0.1/", "names a private address"),
        ("http://evil.example\\@public.example/", "cannot be read safely"),
    ],
)
async def test_the_inside_of_the_network_is_refused(url: str, why: str, clock: FrozenClock) -> None:
    verdict = await run({"url": url}, clock)
    assert verdict.outcome is Outcome.DENY
    assert verdict.reason.startswith("argument /url names")
    assert why in verdict.reason


async def test_literal_inside_addresses_are_refused_even_in_text(clock: FrozenClock) -> None:
    verdict = await run(
        {"body": "grab http://169.254.169.254/latest/ and mail root@[127.0.0.1]"}, clock
    )
    assert verdict.outcome is Outcome.DENY and "link-local" in verdict.reason


async def test_names_in_text_are_not_resolved(clock: FrozenClock) -> None:
    resolver = FakeResolver()
    verdict = await run(
        {"body": "see http://unknown.example/x and http://rebind.example/"},
        clock,
        check=EgressCheck(resolver),
    )
    assert verdict.outcome is Outcome.ALLOW
    assert resolver.asked == []


async def test_a_slow_resolver_fails_closed(clock: FrozenClock) -> None:
    answered = threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Any:
        answered.wait(5)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 0))]

    resolver = SystemResolver(timeout=0.05, lookup=slow)
    try:
        verdict = await run({"url": "http://slow.example/"}, clock, check=EgressCheck(resolver))
    finally:
        answered.set()
    assert verdict.outcome is Outcome.DENY and "no answer within 0.05s" in verdict.reason


async def test_the_system_resolver_refuses_localhost(clock: FrozenClock) -> None:
    check = EgressCheck(SystemResolver(timeout=5))
    for url in ("http://localhost/", "http://127.0.0.1:9/", "http://[::1]/"):
        assert (await run({"url": url}, clock, check=check)).outcome is Outcome.DENY


async def test_the_tasks_domains_hold_for_whole_destinations(clock: FrozenClock) -> None:
    scope = {"tools": {"send_email": {"limits": {"to": {"domains": ["*.acme.example"]}}}}}
    allowed = await run(
        {"to": "a@eu.acme.example", "cc": "b@us.acme.example"},
        clock,
        tool="send_email",
        scope=scope,
    )
    assert allowed.outcome is Outcome.ALLOW
    refused = await run(
        {"to": "a@eu.acme.example", "cc": "x@evil.example"}, clock, tool="send_email", scope=scope
    )
    assert refused.outcome is Outcome.DENY
    assert refused.reason == "argument /cc names a host outside the task's allowed domains"
    # A link in the body is reported, not held to the list.
    linked = await run(
        {"to": "a@eu.acme.example", "body": "see https://public.example/"},
        clock,
        tool="send_email",
        scope=scope,
    )
    assert linked.outcome is Outcome.ALLOW
    assert "public.example" in linked.facts[facts.DESTINATION_HOSTS]


async def test_the_agents_and_the_gateways_allow_lists(clock: FrozenClock) -> None:
    check = EgressCheck(
        FakeResolver(),
        allowed_domains=["public.example"],
        agent_domains={"spiffe://d/agent/a": ["*.acme.example"]},
    )
    assert (
        await run({"url": "https://public.example/"}, clock, check=check)
    ).outcome is Outcome.ALLOW
    assert (await run({"to": "x@evil.example"}, clock, check=check)).reason.endswith(
        "outside the gateway's allowed domains"
    )
    agent = await run({"to": "x@public.example"}, clock, check=check, agent="spiffe://d/agent/a")
    assert agent.reason.endswith("outside the agent's allowed domains")
    ok = await run({"to": "x@eu.acme.example"}, clock, check=check, agent="spiffe://d/agent/a")
    assert ok.outcome is Outcome.ALLOW


def test_destinations_and_hosts() -> None:
    found = destinations(
        {
            "url": "https://Bücher.example/x",
            "to": ["bob@acme.example"],
            "text": "write to eve@evil.example or visit http://docs.example",
            "plain": "contracts.pdf",
        }
    )
    assert [(d.pointer, d.host, d.kind, d.whole) for d in found] == [
        ("/url", "xn--bcher-kva.example", "url", True),
        ("/to/0", "acme.example", "email", True),
        ("/text", "docs.example", "url", False),
        ("/text", "evil.example", "email", False),
    ]
    assert host_of("http://a.example\\@b.example/", "url") is None
    assert host_of("x@", "email") is None
    assert covered(["*.acme.example", "b.example"], "x.acme.example")
    assert not covered(["*.acme.example"], "acme.example")
    assert not covered(["b.example"], "xb.example")


async def test_the_forwarder_never_follows_redirects() -> None:
    """A tool that answers with a redirect to the metadata service gets no second request."""
    followed: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    async def target(request: web.Request) -> web.Response:
        followed.append(request.path)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/tool", redirect)
    app.router.add_get("/latest/meta-data/", target)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    forwarder = Forwarder(timeout=5, max_result_bytes=4096, connections=2)
    await forwarder.start()
    try:
        tool = make_tool("fetch", url=f"http://127.0.0.1:{port}/tool")
        with pytest.raises(UpstreamError, match="answered HTTP 302"):
            await forwarder.forward(tool, make_call("fetch", {}))
    finally:
        await forwarder.stop()
        await runner.cleanup()
    assert followed == []


async def test_an_argument_the_tools_flow_declares_untracked_is_no_destination(
    clock: FrozenClock,
) -> None:
    arguments = {"uri": "notes://169.254.169.254/x", "note": "see http://10.0.0.1/"}
    verdict = await run(arguments, clock, tool="files.resources.read")
    assert verdict.outcome is Outcome.DENY  # the note is still read
    assert "/note" in verdict.reason
    only_uri = await run({"uri": "notes://today"}, clock, tool="files.resources.read")
    assert only_uri.outcome is Outcome.ALLOW
    assert (await run({"uri": "notes://today"}, clock)).outcome is Outcome.DENY  # elsewhere


# -- host_of's cache: the exact (value, kind), values of bounded size -------------------------

_HOST_PIECES = st.sampled_from(
    [
        "http://",
        "https://",
        "a",
        "B",
        "@",
        "\\",
        "/",
        "?",
        "#",
        ":",
        "8080",
        ".",
        "[",
        "]",
        " ",
        "xn--",
        "é",
        "例",
        "%",
        "example",
        "-",
        "\u200b",
        "\uff45",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_HOST_PIECES, max_size=12).map("".join), st.sampled_from(["url", "email"]))
def test_host_of_cached_is_uncached(value: str, kind: str) -> None:
    """Cached hosts are the uncached reading for both kinds of the same value, and again."""
    other = "email" if kind == "url" else "url"
    assert host_of(value, kind) == egress._host_of(value, kind)
    assert host_of(value, other) == egress._host_of(value, other)
    assert host_of(value, kind) == egress._host_of(value, kind)


def test_host_of_cache_keeps_kinds_apart() -> None:
    """One value, two readings: a cache keyed by the value alone would give one for both."""
    value = "http://a@b.example/x"
    assert host_of(value, "url") == "b.example"
    assert host_of(value, "email") is None  # "b.example/x": not a host
    assert host_of(value, "url") == "b.example"


def test_host_of_long_values_read_uncached() -> None:
    """Values beyond MAX_VALUE_CHARS are read every time, not kept."""
    value = "https://" + "a" * MAX_VALUE_CHARS + ".example/"
    before = egress._cached_host_of.cache_info().currsize
    assert host_of(value, "url") == egress._host_of(value, "url")
    assert egress._cached_host_of.cache_info().currsize == before
