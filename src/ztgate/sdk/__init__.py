"""The agent SDK: an agent's identity, warrant and calls through the gateway (see docs/sdk.md).

from ztgate.sdk import Agent, CallDenied

with Agent.connect("http://127.0.0.1:8470", socket_path=".ztgate/agent.sock") as agent:
    agent.bind(task_id=task_id)
    try:
        print(agent.call("search", {"q": "ztgate"}, justification="asked by the user").result)
    except CallDenied as denied:
        print([r.reason for r in denied.reasons])
"""

from ztgate.sdk.aio import AsyncAgent
from ztgate.sdk.client import Agent
from ztgate.sdk.errors import (
    ApprovalPending,
    CallDenied,
    CallFailed,
    CallTimeout,
    IdentityError,
    TransportError,
    Unauthenticated,
    ZtgateError,
)
from ztgate.sdk.identity import IdentityProvider, WorkloadIdentity
from ztgate.sdk.models import BoundWarrant, CallResult, Delegation, Grant, Reason, SvidKey
from ztgate.sdk.principal import CreatedTask, Principal

__all__ = [
    "Agent",
    "ApprovalPending",
    "AsyncAgent",
    "BoundWarrant",
    "CallDenied",
    "CallFailed",
    "CallResult",
    "CallTimeout",
    "CreatedTask",
    "Delegation",
    "Grant",
    "IdentityError",
    "IdentityProvider",
    "Principal",
    "Reason",
    "SvidKey",
    "TransportError",
    "Unauthenticated",
    "WorkloadIdentity",
    "ZtgateError",
]
