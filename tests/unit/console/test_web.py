"""The console's plumbing: templates escape, headers are strict, forms are bounded."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ztgate.console.web import (
    CSP,
    MAX_FORM_BYTES,
    ConsoleError,
    SecurityHeaders,
    error_page,
    field,
    read_form,
    render,
    same_origin,
)


async def _form(request: Request) -> Response:
    try:
        return JSONResponse(await read_form(request))
    except ConsoleError as exc:
        return PlainTextResponse(exc.message, exc.status)


async def _origin(request: Request) -> Response:
    return PlainTextResponse(str(same_origin(request)))


@pytest.fixture
async def client() -> httpx.AsyncClient:
    app = SecurityHeaders(
        Starlette(routes=[Route("/f", _form, methods=["POST"]), Route("/o", _origin)])
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://console")


async def test_every_answer_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    answer = await client.get("/o")
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "same-origin"
    assert "'unsafe-inline'" not in CSP and "frame-ancestors 'none'" in CSP


async def test_origins(client: httpx.AsyncClient) -> None:
    assert (await client.get("/o")).text == "True"  # no Origin header
    assert (await client.get("/o", headers={"origin": "https://console"})).text == "True"
    for other in ("https://evil.example", "null", "http://console"):
        assert (await client.get("/o", headers={"origin": other})).text == "False"


async def test_forms_are_url_encoded_utf8_and_bounded(client: httpx.AsyncClient) -> None:
    ok = await client.post("/f", data={"a": "1", "b": "ü"})
    assert ok.json() == {"a": "1", "b": "ü"}
    assert (await client.post("/f", json={"a": 1})).status_code == 415
    big = await client.post("/f", data={"a": "x" * (MAX_FORM_BYTES + 1)})
    assert big.status_code == 413
    bad = await client.post(
        "/f", content=b"a=%ff", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert bad.status_code == 400


def test_templates_escape_and_fields_are_bounded() -> None:
    page = render("error.html", 403, message="<script>alert(1)</script>")
    assert page.status_code == 403
    assert b"<script>alert" not in page.body and b"&lt;script&gt;" in page.body
    assert page.headers["cache-control"] == "no-store"
    assert error_page(ConsoleError(409, "late")).status_code == 409
    assert field({"a": "xyz"}, "a", 3) == "xyz"
    assert field({}, "a") == ""
    with pytest.raises(ConsoleError):
        field({"a": "xyzw"}, "a", 3)
