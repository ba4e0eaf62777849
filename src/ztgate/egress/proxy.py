"""The egress proxy: an HTTP forward proxy every enclave's traffic must go through.

Listeners: one TCP address (clients authenticate with an enclave's proxy
credentials, else 407) and one Unix socket per enclave (connections on it
are that enclave's). For each connection, in order:

  (1) read one request head, at most `max_header_bytes`, within the
      connect timeout; `CONNECT host:port` or an absolute `http://` URL;
  (2) attribute it: the Unix socket's enclave, or the TCP credentials;
  (3) decide the destination (egress/decision.py): allow-lists, then the
      addresses it resolves to;
  (4) refused: 403 with a one-line reason, audited; allowed: audited
      (`open`) before anything is sent, then connected to the checked
      address (not the name again) within the connect timeout;
  (5) relay bytes both ways (a 200 first for CONNECT; the rewritten head
      first for plain HTTP) until both ends close or the idle timeout;
  (6) audit the close: bytes each way and the duration.

No TLS is intercepted: a CONNECT tunnel carries the client's TLS as is.

One enclave cannot take the proxy from the others: each enclave may have
at most `max_connections_per_enclave` connections relaying and twice as
many open on its socket (the rest still sending their heads); the TCP
listener, whose clients are known only once their head is read, has its
own budget of twice `max_connections` open; at most `max_connections`
relay in all. Beyond any of these: 503. Refusals are recorded one by one
up to `refusal_records_per_second` per enclave (and per listener for the
unattributed ones); past that they are still answered and counted, and
the next recorded refusal says how many went unrecorded before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ztgate.audit.log import AuditLog
from ztgate.egress.agents import AgentRefused, agent_grant_id
from ztgate.egress.decision import Attribution, EgressDecision, decide
from ztgate.egress.grants import Grant, Grants, ProxyCredentials
from ztgate.egress.metrics import ProxyMetrics
from ztgate.egress.pump import Traffic, relay
from ztgate.egress.record import ConnectionFacts, RefusalRecords, egress_entry
from ztgate.egress.request import (
    ProxyRequest,
    RequestError,
    basic_credentials,
    bearer_token,
    parse_head,
)
from ztgate.errors import GatewayError
from ztgate.guards.resolver import Resolver
from ztgate.ids import time_ordered_id

logger = logging.getLogger(__name__)
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True, slots=True)
class ProxyLimits:
    """Bounds on each connection and on all of them."""

    max_header_bytes: int = 16384
    connect_timeout: float = 10.0  # reading the head, and connecting to the destination
    idle_timeout: float = 300.0  # nothing moved either way for this long: closed
    max_connections: int = 256
    max_connections_per_enclave: int = 32
    refusal_records_per_second: float = 20.0


class _Refused(Exception):
    """A connection refused before anything went out: the status and one-line reason."""

    def __init__(self, status: int, reason: str, *, audit: bool = True) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.audit = audit


class EgressProxy:
    """The proxy: its listeners, the enclaves it serves, and the connections it relays."""

    def __init__(
        self,
        audit: AuditLog,
        resolver: Resolver,
        *,
        limits: ProxyLimits | None = None,
        metrics: ProxyMetrics | None = None,
        agents: Callable[[ProxyRequest, str], Awaitable[Grant]] | None = None,
    ) -> None:
        """Record every connection in `audit` (started by the caller); resolve with `resolver`;
        decide agents' connections (`Proxy-Authorization: Bearer`) with `agents` (None: 407)."""
        self._audit = audit
        self._agents = agents
        self._resolver = resolver
        self.limits = limits or ProxyLimits()
        self.metrics = metrics or ProxyMetrics()
        self.grants = Grants()
        self._tcp: asyncio.Server | None = None
        self._unix: dict[str, tuple[asyncio.Server, Path]] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._relaying = 0
        # Connections open, and relaying, per budget: a grant id, or "tcp" (open, before
        # the head says whose it is).
        self._open: Counter[str] = Counter()
        self._relaying_for: Counter[str] = Counter()
        self._refusals = RefusalRecords(self.limits.refusal_records_per_second)

    # -- listeners ----------------------------------------------------------

    async def listen_tcp(self, host: str, port: int) -> tuple[str, int]:
        """Listen on `host:port` (0: any free port); returns the bound address."""
        self._tcp = await asyncio.start_server(
            self._on_tcp, host, port, limit=self.limits.max_header_bytes
        )
        bound = self._tcp.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    def add_enclave(self, grant: Grant) -> ProxyCredentials:
        """Serve an enclave; returns its credentials for the TCP listener."""
        return self.grants.add(grant)

    async def listen_unix(self, grant_id: str, path: Path) -> None:
        """Listen on `path` for the grant `grant_id` (added already); mode 0600.

        Raises:
            GatewayError: the grant is not served.
        """
        if self.grants.get(grant_id) is None:
            raise GatewayError(f"grant {grant_id!r} is not served by the egress proxy")

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._on_unix(grant_id, reader, writer)

        path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(
            handler, str(path), limit=self.limits.max_header_bytes
        )
        path.chmod(0o600)
        self._unix[grant_id] = (server, path)

    async def remove_enclave(self, grant_id: str) -> None:
        """Stop serving a grant: its Unix socket closes, its credentials end."""
        self.grants.remove(grant_id)
        self._refusals.forget(grant_id)
        found = self._unix.pop(grant_id, None)
        if found is not None:
            server, path = found
            server.close()
            await server.wait_closed()
            path.unlink(missing_ok=True)

    async def stop(self) -> None:
        """Close every listener and connection."""
        for grant_id in list(self._unix):
            await self.remove_enclave(grant_id)
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    # -- one connection -------------------------------------------------------

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._handle("tcp", None, (reader, writer))

    async def _on_unix(
        self, grant_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await self._handle("unix", grant_id, (reader, writer))

    async def _handle(self, listener: str, grant_id: str | None, client: Streams) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        facts = ConnectionFacts(time_ordered_id(), None, listener, grant=grant_id)
        budget = grant_id if grant_id is not None else listener
        self._open[budget] += 1
        try:
            # Connections still sending their heads count too: a flood of idle
            # ones is turned away before it costs a decision or a record, and
            # only from its own budget (an enclave's socket, or the TCP listener).
            allowed = (
                2 * self.limits.max_connections_per_enclave
                if grant_id is not None
                else 2 * self.limits.max_connections
            )
            if self._open[budget] > allowed:
                raise _Refused(503, "too many connections to the egress proxy", audit=False)
            await self._serve(facts, grant_id, client)
        except _Refused as refused:
            await self._refuse(facts, client, refused)
        except asyncio.CancelledError:
            pass  # the proxy is stopping: this connection's task ends here
        except Exception:  # never let one connection take the proxy down
            logger.exception("egress proxy connection %s failed", facts.connection_id)
        finally:
            client[1].close()
            self._open[budget] -= 1
            if not self._open[budget]:
                del self._open[budget]
            if task is not None:
                self._handlers.discard(task)

    async def _serve(self, facts: ConnectionFacts, grant_id: str | None, client: Streams) -> None:
        # (1) the request head
        request = await self._read_request(client[0])
        facts.method, facts.destination = request.method, request.destination
        # (2) who it is for
        try:
            grant = await self._attribute(grant_id, request)
        except AgentRefused as refused:  # an agent the checks proved is on record as such
            if refused.agent is not None:
                facts.attribution = Attribution("", refused.agent, refused.task_id)
                facts.grant = agent_grant_id(refused.agent, refused.task_id)
            raise _Refused(refused.status, refused.reason) from refused
        facts.attribution, facts.grant = grant.attribution, grant.id
        # (3) where it may go
        decision = await decide(request.destination, grant.rules, self._resolver)
        if not decision.allowed:
            raise _Refused(403, decision.reason)
        facts.address = decision.address
        if self._relaying_for[grant.id] >= self.limits.max_connections_per_enclave:
            raise _Refused(503, "too many connections from this enclave through the egress proxy")
        if self._relaying >= self.limits.max_connections:
            raise _Refused(503, "too many connections through the egress proxy")
        self._relaying += 1
        self._relaying_for[grant.id] += 1
        try:
            await self._forward(facts, request, decision, client)
        finally:
            self._relaying -= 1
            self._relaying_for[grant.id] -= 1
            if not self._relaying_for[grant.id]:
                del self._relaying_for[grant.id]

    async def _read_request(self, reader: asyncio.StreamReader) -> ProxyRequest:
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise _Refused(431, "the request head is too large") from exc
        except asyncio.IncompleteReadError as exc:
            raise _Refused(400, "the connection closed before a request", audit=False) from exc
        except TimeoutError as exc:
            raise _Refused(408, "no request head in time") from exc
        try:
            return parse_head(head)
        except RequestError as exc:
            raise _Refused(exc.status, exc.reason) from exc

    async def _attribute(self, grant_id: str | None, request: ProxyRequest) -> Grant:
        if grant_id is not None:
            grant = self.grants.get(grant_id)
            if grant is None:
                raise _Refused(403, "the enclave is no longer served")
            return grant
        authorization = request.header(b"proxy-authorization")
        bearer = bearer_token(authorization)
        if bearer is not None:  # an agent (egress/agents.py)
            if self._agents is None:
                raise _Refused(407, "agents' credentials are not accepted: authentication is off")
            return await self._agents(request, bearer)  # AgentRefused: see _serve
        credentials = basic_credentials(authorization)
        grant = self.grants.authenticate(credentials)
        if grant is None:
            raise _Refused(407, "proxy credentials are missing or wrong")
        return grant

    async def _forward(
        self,
        facts: ConnectionFacts,
        request: ProxyRequest,
        decision: EgressDecision,
        client: Streams,
    ) -> None:
        assert decision.address is not None  # noqa: S101 - an allowed decision has one
        # (4) recorded before anything goes out: no record, no connection.
        try:
            await self._audit.append(
                egress_entry(facts, outcome="allow", event="open", reason=decision.reason)
            )
        except GatewayError as exc:
            raise _Refused(503, "the audit log cannot record the connection", audit=False) from exc
        self.metrics.connection("allow", facts.listener)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                destination = await asyncio.open_connection(
                    str(decision.address), request.destination.port
                )
        except TimeoutError:
            await self._close(facts, 504, "the destination did not answer in time", Traffic())
            await _answer(client[1], 504, "the destination did not answer in time")
            return
        except OSError as exc:
            reason = f"the destination refused or is unreachable ({type(exc).__name__})"
            await self._close(facts, 502, reason, Traffic())
            await _answer(client[1], 502, reason)
            return
        traffic = Traffic()
        self.metrics.open_tunnels.inc()
        try:
            if request.tunnel:
                client[1].write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await client[1].drain()
            else:
                head = request.upstream_head()
                traffic.up += len(head)
                destination[1].write(head)
                await destination[1].drain()
            # (5) the bytes
            ending = await relay(
                client, destination, traffic, idle_timeout=self.limits.idle_timeout
            )
        finally:
            self.metrics.open_tunnels.dec()
            destination[1].close()
            # (6) the close
            try:
                await self._close(facts, None, "closed", traffic, started)
            except GatewayError as exc:  # the open record is there; the close is lost
                logger.error("egress close of %s not recorded: %s", facts.connection_id, exc)
        logger.debug("egress connection %s ended: %s", facts.connection_id, ending)

    async def _close(
        self,
        facts: ConnectionFacts,
        status: int | None,
        reason: str,
        traffic: Traffic,
        started: float | None = None,
    ) -> None:
        self.metrics.relayed(traffic.up, traffic.down)
        seconds = time.monotonic() - started if started is not None else None
        entry = egress_entry(
            facts,
            outcome="allow",
            event="close",
            reason=reason,
            status=status,
            up=traffic.up,
            down=traffic.down,
            seconds=seconds,
        )
        await self._audit.append(entry)

    async def _refuse(self, facts: ConnectionFacts, client: Streams, refused: _Refused) -> None:
        self.metrics.connection("deny", facts.listener)
        unrecorded = (
            self._refusals.take(facts.grant or facts.listener, time.monotonic())
            if refused.audit
            else None
        )
        if refused.audit and unrecorded is None:
            self.metrics.unrecorded_refusals.inc()  # past the rate: counted, summarised later
        if unrecorded is not None:
            entry = egress_entry(
                facts,
                outcome="deny",
                event="deny",
                reason=refused.reason,
                status=refused.status,
                unrecorded_before=unrecorded or None,
            )
            try:
                await self._audit.append(entry)
            except GatewayError as exc:
                logger.error("egress refusal not recorded: %s", exc)
        with contextlib.suppress(OSError):
            await _answer(client[1], refused.status, refused.reason)


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    body = (reason.replace("\r", " ").replace("\n", " ") + "\n").encode()
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if status == 407:
        head.append('Proxy-Authenticate: Basic realm="ztgate egress", Bearer realm="ztgate egress"')
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
