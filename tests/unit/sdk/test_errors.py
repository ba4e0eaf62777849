from __future__ import annotations

import httpx
import pytest

from ztgate.sdk.errors import (
    ApprovalPending,
    CallDenied,
    CallFailed,
    CallTimeout,
    IdentityError,
    TransportError,
    Unauthenticated,
    ZtgateError,
    from_httpx,
)
from ztgate.sdk.models import Reason


@pytest.mark.parametrize(
    "kind",
    [
        ApprovalPending,
        CallDenied,
        CallFailed,
        CallTimeout,
        IdentityError,
        TransportError,
        Unauthenticated,
    ],
)
def test_every_error_is_a_ztgate_error(kind: type[ZtgateError]) -> None:
    error = kind("why")
    assert isinstance(error, ZtgateError)
    assert error.message == str(error) == "why"
    assert error.problem == {}
    assert repr(error).startswith(f"{kind.__name__}('why'")


def test_denials_carry_reasons_and_call_ids() -> None:
    reasons = (Reason("scope", "deny", "out of scope"),)
    denied = CallDenied("no", reasons=reasons, call_id="c1", problem={"detail": "no"})
    assert (denied.status, denied.call_id, denied.reasons) == (403, "c1", reasons)
    assert denied.problem == {"detail": "no"}
    pending = ApprovalPending("wait", call_id="c2")
    assert (pending.status, pending.call_id, pending.reasons) == (202, "c2", ())


def test_httpx_failures_map_to_timeouts_and_transport_errors() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/calls")
    for timeout in (httpx.ReadTimeout("r", request=request), httpx.ConnectTimeout("c")):
        assert isinstance(from_httpx(timeout), CallTimeout)
        assert from_httpx(timeout).status is None
    refused = from_httpx(httpx.ConnectError("refused"))
    assert isinstance(refused, TransportError)
    assert "ConnectError: refused" in refused.message
    assert isinstance(from_httpx(httpx.RemoteProtocolError("bad")), TransportError)
