"""Which addresses a host name reaches, and which addresses an agent may never reach.

The egress guard resolves the hosts of URLs an agent sends, then checks
every address the name resolves to: private, loopback, link-local (which
holds the cloud metadata services), shared, multicast, reserved and
unspecified addresses are refused, including IPv4 addresses carried inside
IPv6 ones (mapped, 6to4, Teredo, NAT64). Literal addresses in any form the
system resolver accepts (`127.1`, `2130706433`, `0x7f.0.0.1`) resolve to
what they mean, so they are checked the same way.

`SystemResolver` asks the system resolver (`getaddrinfo` on threads of
its own) with a timeout and keeps answers for a short while; tests inject
their own `Resolver`. A name that does not resolve, or not in time, is an
error: the guard fails closed.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names that reach the machine itself or a cloud's metadata service, refused
# without asking a resolver (they may resolve differently where the tool runs).
LOCAL_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT; Alibaba's metadata
# The special-purpose blocks of IANA's IPv4 and IPv6 registries that are not
# globally reachable (whole blocks, their few anycast exceptions included),
# listed here rather than taken from `ipaddress`, whose tables differ between
# Python releases (3.11's `is_private` misses all of 192.0.0.0/24, where
# Oracle Cloud's metadata service lives at 192.0.0.192, and fec0::/10).
SPECIAL_PURPOSE = tuple(
    ipaddress.ip_network(block)
    for block in (
        "0.0.0.0/8",  # "this network"
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "240.0.0.0/4",  # reserved
        "255.255.255.255/32",  # limited broadcast
        "64:ff9b:1::/48",  # local-use IPv4/IPv6 translation
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing (SRv6) SIDs
        "fc00::/7",  # unique local
        "fec0::/10",  # site-local (deprecated)
    )
)


class ResolutionError(Exception):
    """A host name could not be resolved (the message says why, without the name)."""


class Resolver(Protocol):
    """Resolves a host name to its addresses."""

    async def resolve(self, host: str) -> Sequence[Address]:
        """The addresses `host` resolves to.

        Raises:
            ResolutionError: no answer, an error, or no answer in time.
        """
        ...


@functools.lru_cache(maxsize=4096)
def refusal(address: Address) -> str | None:
    """Why an agent may not reach `address` ("a loopback address" ...), or None.

    Answers are cached by address (an address is equal only to one of the same
    version, integer and IPv6 scope): a dozen range tests per address.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return refusal(embedded)
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services live)"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if address.is_private:
        return "a private address"
    if any(address in block for block in SPECIAL_PURPOSE if block.version == address.version):
        return "a special-purpose address (not globally reachable)"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


def literal(host: str) -> Address | None:
    """The address `host` spells, in any form the system resolver reads as a number, or None.

    Host names are ruled out without the parsers (which raise, at some cost,
    for every name): an IPv6 address has a colon, and without one both
    `ip_address` and `inet_aton` read only digits, dots and (inet_aton) hex.
    Everything else is read once per exact text (bounded cache, texts of up
    to 256 characters; longer ones are read every time).
    """
    text = host.strip("[]")
    if ":" not in text and not (text and _NUMERIC.issuperset(text)):
        return None
    return _cached_literal(text) if len(text) <= _CACHED_CHARS else _literal(text)


_NUMERIC = frozenset("0123456789abcdefxABCDEFX.")
_CACHED_CHARS = 256


def _literal(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if not text or not _NUMERIC.issuperset(text):
        return None
    try:
        # inet_aton reads 127.1, 2130706433 and 0x7f.0.0.1 as getaddrinfo does.
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


_cached_literal = functools.lru_cache(maxsize=4096)(_literal)


class SystemResolver:
    """The system resolver, with a timeout and a small cache of answers.

    Lookups run on threads of their own (`RESOLVER_THREADS`, shared by every
    resolver), never on the event loop's default executor, which the audit
    writer and the stores use: a name whose servers do not answer holds a
    thread until the C library gives up (5-30 s), whatever the timeout here,
    and that must not stall anything else. At most `max_lookups` lookups run
    or wait at once (threads still held by lookups whose callers gave up
    included); beyond that a lookup is refused at once (fail closed). One
    name is looked up once at a time, however many ask, and a name that
    does not resolve is remembered as such for `failure_seconds`.
    """

    def __init__(
        self,
        *,
        timeout: float = 1.0,
        cache_seconds: float = 30.0,
        cache_size: int = 4096,
        failure_seconds: float = 5.0,
        max_lookups: int = 64,
        lookup: Callable[..., list[Any]] = socket.getaddrinfo,
    ) -> None:
        """Answers are kept `cache_seconds`, failures `failure_seconds` (0: not at all)."""
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._failure_seconds = min(failure_seconds, cache_seconds)
        self._cache_size = cache_size
        self._max_lookups = max_lookups
        self._lookup = lookup
        self._cache: OrderedDict[str, tuple[float, tuple[Address, ...] | str]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[list[Any]]] = {}
        self._running = 0  # lookups submitted whose thread has not finished
        self._lock = threading.Lock()

    @property
    def running(self) -> int:
        """Lookups whose thread has not finished (those given up on included)."""
        return self._running

    async def resolve(self, host: str) -> Sequence[Address]:
        """The addresses of `host` (TCP), from the cache or the system resolver."""
        now = time.monotonic()
        hit = self._cache.get(host)
        if hit is not None and hit[0] > now:
            if isinstance(hit[1], str):
                raise ResolutionError(hit[1])
            return hit[1]
        pending = self._pending.get(host)
        if pending is None:
            pending = self._submit(host)
        try:
            async with asyncio.timeout(self._timeout):
                infos = await asyncio.shield(pending)  # others may wait for it too
        except TimeoutError as exc:
            raise ResolutionError(f"no answer within {self._timeout:g}s") from exc
        except (OSError, UnicodeError) as exc:
            why = f"it does not resolve ({type(exc).__name__})"
            self._remember(host, time.monotonic() + self._failure_seconds, why)
            raise ResolutionError(why) from exc
        addresses = tuple(
            ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            for info in infos
            if info[0] in (socket.AF_INET, socket.AF_INET6)
        )
        if not addresses:
            why = "it resolves to no IP address"
            self._remember(host, time.monotonic() + self._failure_seconds, why)
            raise ResolutionError(why)
        self._remember(host, now + self._cache_seconds, addresses)
        return addresses

    def _submit(self, host: str) -> asyncio.Future[list[Any]]:
        """Start looking `host` up on the resolver's threads.

        Raises:
            ResolutionError: `max_lookups` lookups are running or waiting already.
        """
        with self._lock:
            if self._running >= self._max_lookups:
                raise ResolutionError("the resolver is busy (too many lookups at once)")
            self._running += 1
        try:
            submitted = _executor().submit(self._lookup, host, None, 0, socket.SOCK_STREAM)
        except BaseException:
            self._finished(None)
            raise
        submitted.add_done_callback(self._finished)
        pending = asyncio.wrap_future(submitted)
        self._pending[host] = pending
        pending.add_done_callback(functools.partial(self._settled, host))
        return pending

    def _finished(self, _submitted: object) -> None:
        with self._lock:  # on the lookup's own thread
            self._running -= 1

    def _settled(self, host: str, pending: asyncio.Future[list[Any]]) -> None:
        if self._pending.get(host) is pending:
            del self._pending[host]
        if not pending.cancelled():
            pending.exception()  # retrieved: every caller may have given up on it

    def _remember(self, host: str, until: float, answer: tuple[Address, ...] | str) -> None:
        if until <= time.monotonic():
            return
        self._cache[host] = (until, answer)
        self._cache.move_to_end(host)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


# Threads for lookups (see `SystemResolver`), made on first use (from the event loop).
RESOLVER_THREADS = 8


@functools.cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="ztgate-resolver")
