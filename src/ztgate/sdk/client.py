"""`Agent`: the synchronous client an agent calls tools through.

    with Agent.connect("http://127.0.0.1:8470", socket_path=".ztgate/agent.sock") as agent:
        agent.bind(task_id=task_id)
        result = agent.call("search", {"q": "ztgate"}, justification="the user asked")

Every request has a deadline (`timeout`, overridable per call). Before each
request that uses the warrant the agent compares its current SVID key with
the key the warrant is bound to and, after a rotation, binds again first.
Nothing is retried: a proof is good for one request only.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx

from ztgate.sdk import requests
from ztgate.sdk.errors import ApprovalPending, CallDenied, ZtgateError, from_httpx
from ztgate.sdk.identity import DEFAULT_AUDIENCE, IdentityProvider, WorkloadIdentity
from ztgate.sdk.models import BoundWarrant, CallResult, Delegation, Grant, SvidKey, as_grant
from ztgate.sdk.tls import client_verify

DEFAULT_TIMEOUT = 30.0
MAX_POLL_SECONDS = 30.0  # one long-poll; the gateway allows up to 60


class Agent:
    """An agent: its identity, the warrant it holds, and calls through the gateway."""

    def __init__(
        self,
        url: str,
        identity: IdentityProvider,
        *,
        audience: str = DEFAULT_AUDIENCE,
        timeout: float = DEFAULT_TIMEOUT,
        server_id: str | None = None,
        verify: ssl.SSLContext | None = None,
        transport: httpx.BaseTransport | None = None,
        owns_identity: bool = False,
    ) -> None:
        """A client of the gateway at `url` (http on loopback, or https).

        `server_id` is the SPIFFE ID the gateway must present over https
        (default: the gateway of the agent's trust domain); `verify` replaces
        that check with a TLS context of your own. `owns_identity`: `close()`
        closes `identity` too.
        """
        self.identity = identity
        self.audience = audience
        self._owns_identity = owns_identity
        self._warrant: BoundWarrant | None = None
        self._bind_lock = threading.Lock()
        self._http = httpx.Client(
            base_url=url,
            timeout=timeout,
            verify=client_verify(
                url,
                identity.trust_roots,
                lambda: identity.svid().spiffe_id,
                server_id=server_id,
                verify=verify,
            ),
            transport=transport,
        )

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        socket_path: str | None = None,
        audience: str = DEFAULT_AUDIENCE,
        timeout: float = DEFAULT_TIMEOUT,
        identity_timeout: float = 10.0,
        spiffe_id: str | None = None,
        server_id: str | None = None,
    ) -> Agent:
        """An agent whose SVIDs come from the Workload API at `socket_path`.

        `spiffe_id` picks the identity when the process is registered under several.

        Raises:
            IdentityError: no SVID within `identity_timeout` seconds.
        """
        identity = WorkloadIdentity(
            socket_path, audience=audience, spiffe_id=spiffe_id, timeout=identity_timeout
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
            identity.close()
            raise

    @property
    def spiffe_id(self) -> str:
        """The agent's SPIFFE ID."""
        return self.identity.svid().spiffe_id

    @property
    def warrant(self) -> BoundWarrant | None:
        """The warrant held, as last bound (None before `bind`)."""
        return self._warrant

    def bind(
        self,
        task_id: str | None = None,
        warrant_id: str | None = None,
        *,
        grant: Grant | Delegation | Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> BoundWarrant:
        """Bind a warrant to this agent's current SVID key and hold it.

        `task_id` alone: the task's own warrant. `task_id` and `warrant_id`,
        or `grant` (a `Delegation` or its JSON form): a warrant delegated to
        this agent.

        Raises:
            ZtgateError: the gateway refused (e.g. `CallDenied`: another
                agent's warrant, or a finished task), or no answer.
        """
        if grant is None:
            if task_id is None:
                raise ValueError("bind needs a task_id (and a warrant_id) or a grant")
            grant = Grant(task_id, warrant_id)
        with self._bind_lock:
            return self._bind(self.identity.svid(), as_grant(grant), timeout)

    def _bind(self, svid: SvidKey, grant: Grant, timeout: float | None) -> BoundWarrant:
        request = requests.bind_request(
            svid,
            grant,
            audience=self.audience,
            issued_at=time.time(),
            bearer=self.identity.jwt_svid(),
        )
        warrant = requests.parse_bind(self._send(request, timeout), expected_jkt=svid.jkt)
        self._warrant = warrant
        return warrant

    def _ready(self, timeout: float | None) -> tuple[SvidKey, BoundWarrant]:
        """The SVID to sign with and the warrant bound to it (bound again after a rotation)."""
        svid = self.identity.svid()
        warrant = self._warrant
        if warrant is None:
            raise ZtgateError("no warrant: call bind() first")
        if warrant.jkt != svid.jkt:
            with self._bind_lock:
                current = self._warrant or warrant  # another thread may have bound already
                if current.jkt != svid.jkt:
                    current = self._bind(svid, current.grant, timeout)
                warrant = current
        return svid, warrant

    def call(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        justification: str | None = None,
        timeout: float | None = None,
        approval_timeout: float = 0.0,
    ) -> CallResult:
        """Call `tool` through the gateway under the held warrant.

        A call policy asks about waits for a principal's approval: up to
        `approval_timeout` seconds (see `wait_for_approval`); with 0, the
        default, `ApprovalPending` is raised at once.

        Raises:
            CallDenied: a check denied it (`reasons` says which and why).
            ApprovalPending: a principal must approve it first (and has not, in time).
            Unauthenticated: the gateway did not accept this agent's SVID.
            CallTimeout: no answer in time (the tool may have run).
            CallFailed: the tool failed, or another error answer.
            TransportError: no usable answer.
            IdentityError: no usable SVID.
            ValueError: arguments with no canonical JSON form (NaN, ...).
        """
        try:
            return self._call(tool, arguments or {}, justification, timeout, None)
        except ApprovalPending as pending:
            pending.tool = tool
            pending.arguments = dict(arguments or {})
            pending.justification = justification
            if approval_timeout <= 0:
                raise
            return self.wait_for_approval(pending, approval_timeout, request_timeout=timeout)

    def proxy_headers(
        self, host: str, port: int, *, method: str = "CONNECT", timeout: float | None = None
    ) -> dict[str, str]:
        """Headers for one connection to `host:port` through the gateway's egress proxy.

        Send them with the `CONNECT` (or the absolute-form request of `method`)
        to `[egress_proxy]`'s TCP address: the connection is then a call of
        the tool `egress`, allowed only within the task's scope, and on record
        as this agent's and task's. Fresh headers for every connection.

        Raises:
            ValueError: not a destination the proxy would read.
            IdentityError: no usable SVID.
        """
        svid, warrant = self._ready(timeout)
        return requests.proxy_headers(
            svid,
            warrant,
            host,
            port,
            method=method,
            audience=self.audience,
            issued_at=time.time(),
            bearer=self.identity.jwt_svid(),
        )

    def _call(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        justification: str | None,
        timeout: float | None,
        approval: str | None,
    ) -> CallResult:
        svid, warrant = self._ready(timeout)
        request = requests.call_request(
            svid,
            warrant,
            tool,
            arguments,
            audience=self.audience,
            issued_at=time.time(),
            bearer=self.identity.jwt_svid(),
            justification=justification,
            approval=approval,
        )
        return requests.parse_call(self._send(request, timeout))

    def wait_for_approval(
        self,
        pending: ApprovalPending,
        timeout: float = 600.0,
        *,
        request_timeout: float | None = None,
    ) -> CallResult:
        """Wait up to `timeout` seconds for the decision on `pending`; once approved, run the call.

        The approved call is re-sent exactly as asked (same tool, arguments
        and justification) with a fresh proof and the approval's id; the
        gateway runs it once.

        Raises:
            CallDenied: the request was rejected, expired, or used already.
            ApprovalPending: still undecided after `timeout` seconds.
            ValueError: `pending` does not name an approval and a call.
            ZtgateError: any other failure, as `call` raises.
        """
        approval = pending.approval_id
        if approval is None or pending.tool is None:
            raise ValueError("this ApprovalPending names no approval request to wait for")
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            poll = max(0.0, min(deadline - time.monotonic(), MAX_POLL_SECONDS))
            answer = self._send(requests.wait_request(approval, poll), poll + 10.0)
            state, reason = requests.parse_wait(answer)
            if state == "approved":
                return self._call(
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
            if time.monotonic() >= deadline:
                raise pending

    def delegate(
        self,
        agent: str,
        *,
        scope: Mapping[str, Any] | None = None,
        expires_in_seconds: int | None = None,
        timeout: float | None = None,
    ) -> Delegation:
        """Delegate a warrant under the held one to the sub-agent `agent` (a SPIFFE ID).

        `scope` may only narrow the held warrant's; hand the returned
        `Delegation` (or its `to_json()`) to the sub-agent, which binds it.

        Raises:
            CallDenied: the scope would widen, the depth limit is reached, ...
            ZtgateError: any other failure.
        """
        svid, warrant = self._ready(timeout)
        request = requests.delegate_request(
            svid,
            warrant,
            agent,
            audience=self.audience,
            issued_at=time.time(),
            bearer=self.identity.jwt_svid(),
            scope=scope,
            expires_in_seconds=expires_in_seconds,
        )
        return requests.parse_delegate(self._send(request, timeout))

    def _send(self, request: requests.HttpRequest, timeout: float | None) -> httpx.Response:
        try:
            return self._http.request(
                request.method,
                request.path,
                headers=request.headers,
                content=request.content,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.HTTPError as exc:
            raise from_httpx(exc) from exc

    def close(self) -> None:
        """Close the HTTP connections (and the identity, if this agent owns it)."""
        self._http.close()
        if self._owns_identity:
            self.identity.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()
