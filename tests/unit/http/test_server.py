"""Serving: loopback only, and uvicorn tuned to leak nothing and trust no proxy header."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ztgate.config import Settings
from ztgate.errors import ConfigError
from ztgate.http.server import check_bind, check_workers, serve, uvicorn_config
from ztgate.testing import make_settings


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "localhost"])
def test_loopback_addresses_are_accepted(host: str) -> None:
    check_bind(host)


@pytest.mark.parametrize(
    "host",
    [
        "0.0.0.0",
        "::",
        "192.168.1.10",
        "10.0.0.1",
        "172.16.0.1",
        "8.8.8.8",
        "fe80::1",
        "2001:db8::1",
        "::ffff:192.168.1.10",
        "gateway.example.com",
        "LOCALHOST.",
        "localhost.localdomain",
        "",
        "127.0.0.1 ",
    ],
)
def test_anything_else_is_refused(host: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_bind(host)
    assert caught.value.source == "gateway"
    assert caught.value.key == "host"
    assert repr(host) in caught.value.reason
    assert "loopback" in caught.value.reason


def test_serve_refuses_a_public_address(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, '[gateway]\nhost = "0.0.0.0"\nauthentication = "off"\n')
    with pytest.raises(ConfigError, match=re.escape("refusing to listen on '0.0.0.0'")):
        serve(settings)


def test_the_uvicorn_config_is_the_gateways() -> None:
    app = object()
    config = uvicorn_config(app, "127.0.0.1", 8470, "warning")
    assert config.app is app
    assert (config.host, config.port) == ("127.0.0.1", 8470)
    assert config.access_log is False
    assert config.proxy_headers is False
    assert config.server_header is False
    assert config.lifespan == "on"
    # httptools, writing each response once (ztgate.http.coalesce)
    assert config.loop == "uvloop"
    assert isinstance(config.http, type) and issubclass(config.http, HttpToolsProtocol)
    assert config.http.__name__ == "CoalescingHttpToolsProtocol"
    assert config.log_level == "warning"
    # No access log: the uvicorn.access logger is left with nowhere to write.
    assert not logging.getLogger("uvicorn.access").hasHandlers()


async def test_a_server_run_with_the_config_ignores_forwarded_headers_and_names_no_server() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].split(".")[1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        seen["client"] = scope["client"]
        seen["scheme"] = scope["scheme"]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, "warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started
        async with httpx.AsyncClient() as client:
            response = await client.get(
                f"http://127.0.0.1:{port}/",
                headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
            )
    finally:
        server.should_exit = True
        await task
        sock.close()
    assert response.status_code == 200
    assert "server" not in response.headers
    assert seen["client"][0] == "127.0.0.1"
    assert seen["scheme"] == "http"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "gateway.example.com"])
def test_any_address_is_allowed_when_authentication_is_required(host: str) -> None:
    check_bind(host, "required")
    with pytest.raises(ConfigError, match="authentication"):
        check_bind(host, "off")


def test_tls_options_are_empty_without_tls(tmp_path: Path) -> None:
    from ztgate.http.server import tls_options

    assert tls_options(make_settings(tmp_path)) == {}


def test_tls_options_issue_the_gateway_svid_and_ask_for_client_certificates(
    tmp_path: Path,
) -> None:
    import ssl

    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from ztgate.http.server import tls_options

    settings = make_settings(tmp_path, "[gateway]\ntls = true\ntls_svid_ttl_seconds = 3600\n")
    options = tls_options(settings)
    assert issubclass(options["http"], HttpToolsProtocol)
    assert options["ssl_cert_reqs"] == ssl.CERT_OPTIONAL
    tls_dir = settings.path(settings.data_dir) / "tls"
    assert options["ssl_certfile"] == str(tls_dir / "gateway.pem")
    assert options["ssl_keyfile"] == str(tls_dir / "gateway.key")
    assert options["ssl_ca_certs"] == str(tls_dir / "roots.pem")
    config = uvicorn_config(object(), "127.0.0.1", 0, "warning", **options)
    assert config.ssl_cert_reqs == ssl.CERT_OPTIONAL
    # mTLS's protocol, writing each response once (ztgate.http.coalesce)
    assert isinstance(config.http, type) and issubclass(config.http, options["http"])


@pytest.mark.parametrize(
    ("store", "tls", "reason"),
    [
        ({}, False, "needs the hot state in Redis"),
        ({"hot_state_url": "redis://127.0.0.1:6379/0"}, False, "needs the store on PostgreSQL"),
        (
            {
                "hot_state_url": "redis://127.0.0.1:6379/0",
                "url": "postgresql+psycopg://ztgate@127.0.0.1:5432/ztgate",
            },
            True,
            "tls = true is not supported",
        ),
    ],
)
def test_several_workers_need_shared_state(store: dict[str, str], tls: bool, reason: str) -> None:
    settings = Settings.model_validate({"gateway": {"workers": 2, "tls": tls}, "store": store})
    with pytest.raises(ConfigError, match=reason):
        check_workers(settings)


def test_one_worker_or_shared_state_is_accepted() -> None:
    check_workers(Settings())
    shared = {
        "hot_state_url": "redis://127.0.0.1:6379/0",
        "url": "postgresql+psycopg://ztgate@127.0.0.1:5432/ztgate",
    }
    check_workers(Settings.model_validate({"gateway": {"workers": 4}, "store": shared}))
