"""`AsyncAgent`: the asyncio client, over `httpx.AsyncClient`; the same API as `Agent`, awaited.

    async with await AsyncAgent.connect(url, socket_path=".ztgate/agent.sock") as agent:
        await agent.bind(task_id=task_id)
        result = await agent.call("search", {"q": "ztgate"}, justification="the user asked")

The Workload API client is blocking (py-spiffe): connecting, renewing the
JWT-SVID and closing run in a worker thread; reading the current SVID key
is in memory and never blocks the loop.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from typing import Any

import httpx

from ztgate.sdk import requests
from ztgate.sdk.client import DEFAULT_TIMEOUT, MAX_POLL_SECONDS
from ztgate.sdk.errors import ApprovalPending, CallDenied, ZtgateError, from_httpx
from ztgate.sdk.identity import DEFAULT_AUDIENCE, IdentityProvider, WorkloadIdentity
from ztgate.sdk.models import BoundWarrant, CallResult, Delegation, Grant, SvidKey, as_grant
from ztgate.sdk.tls import client_verify


class AsyncAgent:
    """An agent on asyncio: its identity, the warrant it holds, and calls through the gateway."""

    def __init__(
        self,
        url: str,
        identity: IdentityProvider,
        *,
        audience: str = DEFAULT_AUDIENCE,
        timeout: float = DEFAULT_TIMEOUT,
        server_id: str | None = None,
        verify: ssl.SSLContext | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        owns_identity: bool = False,
    ) -> None:
        """See `Agent`: the same parameters."""
        self.identity = identity
        self.audience = audience
        self._owns_identity = owns_identity
        self._warrant: BoundWarrant | None = None
        self._bind_lock = asyncio.Lock()
        self.base_url = url
        # How the gateway's certificate is verified (False for plain http).
        self.verify = client_verify(
            url,
            identity.trust_roots,
            lambda: identity.svid().spiffe_id,
            server_id=server_id,
            verify=verify,
        )
        self._http = httpx.AsyncClient(
            base_url=url, timeout=timeout, verify=self.verify, transport=transport
        )

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        socket_path: str | None = None,
        audience: str = DEFAULT_AUDIENCE,
        timeout: float = DEFAULT_TIMEOUT,
        identity_timeout: float = 10.0,
        spiffe_id: str | None = None,
        server_id: str | None = None,
    ) -> AsyncAgent:
        """An agent whose SVIDs come from the Workload API at `socket_path`.

        `spiffe_id` picks the identity when the process is registered under several.

        Raises:
            IdentityError: no SVID within `identity_timeout` seconds.
        """
        identity = await asyncio.to_thread(
            WorkloadIdentity,
            socket_path,
            audience=audience,
            spiffe_id=spiffe_id,
            timeout=identity_timeout,
        )
        try:
            return cls(
                url,
                identity,
                audience=audience,
                timeout=timeout,
                server_id=server_id,
                owns_identity=True,
            )
        except BaseException:
            await asyncio.to_thread(identity.close)
            raise

    @property
    def spiffe_id(self) -> str:
        """The agent's SPIFFE ID."""
        return self.identity.svid().spiffe_id

    @property
    def warrant(self) -> BoundWarrant | None:
        """The warrant held, as last bound (None before `bind`)."""
        return self._warrant

    async def _bearer(self) -> str:
        cached = self.identity.cached_jwt_svid()
        return cached if cached is not None else await asyncio.to_thread(self.identity.jwt_svid)

    async def bind(
        self,
        task_id: str | None = None,
        warrant_id: str | None = None,
        *,
        grant: Grant | Delegation | Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> BoundWarrant:
        """See `Agent.bind`."""
        if grant is None:
            if task_id is None:
                raise ValueError("bind needs a task_id (and a warrant_id) or a grant")
            grant = Grant(task_id, warrant_id)
        async with self._bind_lock:
            return await self._bind(self.identity.svid(), as_grant(grant), timeout)

    async def _bind(self, svid: SvidKey, grant: Grant, timeout: float | None) -> BoundWarrant:
        request = requests.bind_request(
            svid, grant, audience=self.audience, issued_at=time.time(), bearer=await self._bearer()
        )
        warrant = requests.parse_bind(await self._send(request, timeout), expected_jkt=svid.jkt)
        self._warrant = warrant
        return warrant

    async def ready(self, timeout: float | None = None) -> tuple[SvidKey, BoundWarrant]:
        """The current SVID and the warrant bound to its key (bound again after a rotation).

        Raises:
            ZtgateError: no warrant yet (`bind` first), or binding it again failed.
        """
        return await self._ready(timeout)

    async def _ready(self, timeout: float | None) -> tuple[SvidKey, BoundWarrant]:
        svid = self.identity.svid()
        warrant = self._warrant
        if warrant is None:
            raise ZtgateError("no warrant: call bind() first")
        if warrant.jkt != svid.jkt:
            async with self._bind_lock:
                current = self._warrant or warrant  # another task may have bound already
                if current.jkt != svid.jkt:
                    current = await self._bind(svid, current.grant, timeout)
                warrant = current
        return svid, warrant

    async def call(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        justification: str | None = None,
        timeout: float | None = None,
        approval_timeout: float = 0.0,
    ) -> CallResult:
        """See `Agent.call`."""
        try:
            return await self._call(tool, arguments or {}, justification, timeout, None)
        except ApprovalPending as pending:
            pending.tool = tool
            pending.arguments = dict(arguments or {})
            pending.justification = justification
            if approval_timeout <= 0:
                raise
            return await self.wait_for_approval(pending, approval_timeout, request_timeout=timeout)

    async def proxy_headers(
        self, host: str, port: int, *, method: str = "CONNECT", timeout: float | None = None
    ) -> dict[str, str]:
        """See `Agent.proxy_headers`."""
        svid, warrant = await self.ready(timeout)
        return requests.proxy_headers(
            svid,
            warrant,
            host,
            port,
            method=method,
            audience=self.audience,
            issued_at=time.time(),
            bearer=await self._bearer(),
        )

    async def wait_for_approval(
        self,
        pending: ApprovalPending,
        timeout: float = 600.0,
        *,
        request_timeout: float | None = None,
    ) -> CallResult:
        """See `Agent.wait_for_approval`."""
        approval = pending.approval_id
        if approval is None or pending.tool is None:
            raise ValueError("this ApprovalPending names no approval request to wait for")
        state, reason = await self.decision(approval, timeout)
        if state == "approved":
            return await self._call(
                pending.tool,
                pending.arguments,
                pending.justification,
                request_timeout,
                approval,
            )
        if state != "pending":
            raise CallDenied(
                reason or f"approval {approval} is {state}",
                call_id=pending.call_id,
                reasons=pending.reasons,
            )
        raise pending

    async def decision(self, approval_id: str, timeout: float) -> tuple[str, str | None]:
        """Long-poll `approval_id` until it is decided or `timeout` seconds pass.

        Returns its state (`pending` when the time ran out) and the reason given.

        Raises:
            TransportError: no usable answer.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            poll = max(0.0, min(deadline - loop.time(), MAX_POLL_SECONDS))
            answer = await self._send(requests.wait_request(approval_id, poll), poll + 10.0)
            state, reason = requests.parse_wait(answer)
            if state != "pending" or loop.time() >= deadline:
                return state, reason

    async def _call(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        justification: str | None,
        timeout: float | None,
        approval: str | None,
    ) -> CallResult:
        svid, warrant = await self._ready(timeout)
        request = requests.call_request(
            svid,
            warrant,
            tool,
            arguments,
            audience=self.audience,
            issued_at=time.time(),
            bearer=await self._bearer(),
            justification=justification,
            approval=approval,
        )
        return requests.parse_call(await self._send(request, timeout))

    async def delegate(
        self,
        agent: str,
        *,
        scope: Mapping[str, Any] | None = None,
        expires_in_seconds: int | None = None,
        timeout: float | None = None,
    ) -> Delegation:
        """See `Agent.delegate`."""
        svid, warrant = await self._ready(timeout)
        request = requests.delegate_request(
            svid,
            warrant,
            agent,
            audience=self.audience,
            issued_at=time.time(),
            bearer=await self._bearer(),
            scope=scope,
            expires_in_seconds=expires_in_seconds,
        )
        return requests.parse_delegate(await self._send(request, timeout))

    async def _send(self, request: requests.HttpRequest, timeout: float | None) -> httpx.Response:
        try:
            return await self._http.request(
                request.method,
                request.path,
                headers=request.headers,
                content=request.content,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.HTTPError as exc:
            raise from_httpx(exc) from exc

    async def close(self) -> None:
        """Close the HTTP connections (and the identity, if this agent owns it)."""
        await self._http.aclose()
        if self._owns_identity:
            await asyncio.to_thread(self.identity.close)

    async def __aenter__(self) -> AsyncAgent:
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        await self.close()
