"""The exception hierarchy: typed fields, one-line diagnostics."""

from __future__ import annotations

import pytest

from ztgate.errors import (
    AuditError,
    ConfigError,
    ConflictError,
    GatewayError,
    InvalidInputError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    UpstreamError,
)
from ztgate.jsonlimits import JsonTooDeepError


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (ConfigError("f", "k", "r"), (GatewayError,)),
        (StoreError("x"), (GatewayError,)),
        (StoreUnavailableError("x"), (StoreError, GatewayError)),
        (NotFoundError("tool", "x"), (GatewayError,)),
        (ConflictError("x"), (GatewayError,)),
        (InvalidInputError("x"), (GatewayError,)),
        (JsonTooDeepError(3), (InvalidInputError, GatewayError)),
        (UpstreamError("x"), (GatewayError,)),
        (AuditError("x"), (GatewayError,)),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else "",
)
def test_hierarchy(error: GatewayError, bases: tuple[type[Exception], ...]) -> None:
    for base in bases:
        assert isinstance(error, base)


def test_unavailable_is_not_a_plain_store_error_match() -> None:
    """Callers tell "unavailable" (fail closed, 503) from other store errors."""
    assert not isinstance(StoreError("x"), StoreUnavailableError)


def test_gateway_error_message_diagnostics_and_repr() -> None:
    error = GatewayError("the thing failed")
    assert error.message == "the thing failed"
    assert str(error) == "the thing failed"
    assert error.diagnostics() == "the thing failed"
    assert repr(error) == "GatewayError('the thing failed')"


def test_repr_names_the_subclass() -> None:
    assert repr(ConflictError("tool 'x' already exists")) == (
        "ConflictError(\"tool 'x' already exists\")"
    )


@pytest.mark.parametrize(
    ("source", "key", "reason", "message"),
    [
        ("ztgate.toml", "gateway.port", "too big", "ztgate.toml: gateway.port: too big"),
        ("/etc/key.pem", "", "not found", "/etc/key.pem: not found"),
        ("environment variable ZTGATE_X", "x", "bad", "environment variable ZTGATE_X: x: bad"),
    ],
)
def test_config_error_names_source_key_and_reason(
    source: str, key: str, reason: str, message: str
) -> None:
    error = ConfigError(source, key, reason)
    assert (error.source, error.key, error.reason) == (source, key, reason)
    assert error.message == message
    assert error.diagnostics() == message
    assert str(error) == message


def test_not_found_error_names_kind_and_name() -> None:
    error = NotFoundError("tool", "get_weather")
    assert (error.kind, error.name) == ("tool", "get_weather")
    assert error.message == "tool 'get_weather' not found"


def test_not_found_error_quotes_hostile_names() -> None:
    error = NotFoundError("tool", "x'\n; rm -rf")
    assert "\n" not in error.message


@pytest.mark.parametrize(("kwargs", "timeout"), [({}, False), ({"timeout": True}, True)])
def test_upstream_error_says_whether_it_timed_out(kwargs: dict[str, bool], timeout: bool) -> None:
    error = UpstreamError("upstream took too long", **kwargs)
    assert error.timeout is timeout
    assert error.message == "upstream took too long"


def test_errors_can_be_raised_and_caught_as_gateway_errors() -> None:
    with pytest.raises(GatewayError, match="tool 'x' not found"):
        raise NotFoundError("tool", "x")
