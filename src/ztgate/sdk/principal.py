"""`Principal`: the management side a person or a system uses to give agents tasks.

    principal = Principal("http://127.0.0.1:8470", api_key="ztg_...")
    created = principal.create_task(
        agent="spiffe://ztgate.local/agent/mailer",
        intent="reply to Alice",
        scope={"tools": {"send_email": {"limits": {"to": {"domains": ["acme.example"]}}}}},
    )
    # hand created.task_id to the agent, which binds the task's warrant

Authenticated by an API key (`Authorization: Bearer ztg_...`).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from ztgate.sdk import requests
from ztgate.sdk.client import DEFAULT_TIMEOUT
from ztgate.sdk.errors import TransportError, from_httpx
from ztgate.sdk.models import Grant


@dataclass(frozen=True, slots=True)
class CreatedTask:
    """A new task (as the gateway describes it) and its root warrant's id."""

    task: Mapping[str, Any]
    warrant_id: str

    @property
    def task_id(self) -> str:
        """The task's id."""
        return str(self.task["id"])

    @property
    def grant(self) -> Grant:
        """What the task's agent binds."""
        return Grant(self.task_id)


class Principal:
    """A client of the gateway's task API, authenticated by an API key."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`verify`: for https, a TLS context trusting the gateway (e.g. its `roots.pem`)."""
        self._http = httpx.Client(
            base_url=url,
            timeout=timeout,
            verify=verify,
            transport=transport,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
        )

    def create_task(
        self,
        *,
        agent: str,
        intent: str,
        scope: Mapping[str, Any],
        budget_calls: int | None = None,
        budget_spend: float | None = None,
        expires_in_seconds: int | None = None,
    ) -> CreatedTask:
        """Create a task for the agent with SPIFFE ID `agent`.

        Raises:
            CallFailed: an invalid scope or agent (422); CallDenied: the key lacks the role.
            ZtgateError: any other failure.
        """
        body: dict[str, Any] = {"agent": agent, "intent": intent, "scope": dict(scope)}
        budget = {
            k: v for k, v in (("calls", budget_calls), ("spend", budget_spend)) if v is not None
        }
        if budget:
            body["budget"] = budget
        if expires_in_seconds is not None:
            body["expires_in_seconds"] = expires_in_seconds
        data = self._post(requests.TASKS, body)
        task, warrant_id = data.get("task"), data.get("warrant_id")
        if not isinstance(task, dict) or not isinstance(warrant_id, str) or "id" not in task:
            raise TransportError("the gateway's answer names no task and warrant", status=201)
        return CreatedTask(task, warrant_id)

    def task(self, task_id: str) -> dict[str, Any]:
        """The task and its warrants: `{"task": {...}, "warrants": [...]}`."""
        return self._request("GET", f"{requests.TASKS}/{quote(task_id, safe='')}")

    def complete_task(self, task_id: str) -> dict[str, Any]:
        """Mark the task done: every warrant of it stops working."""
        return self._post(f"{requests.TASKS}/{quote(task_id, safe='')}/complete", None)

    def revoke_task(self, task_id: str, *, reason: str = "") -> dict[str, Any]:
        """Revoke the task: every warrant of it stops working."""
        return self._post(f"{requests.TASKS}/{quote(task_id, safe='')}/revoke", {"reason": reason})

    def revoke_warrant(self, warrant_id: str, *, reason: str = "") -> dict[str, Any]:
        """Revoke one warrant and every warrant delegated below it."""
        path = f"/v1/warrants/{quote(warrant_id, safe='')}/revoke"
        return self._post(path, {"reason": reason})

    def _post(self, path: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        return self._request("POST", path, body)

    def _request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise from_httpx(exc) from exc
        return requests.parse_json(response)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> Principal:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()
