"""The console's HTTP plumbing: templates, security headers, forms, error pages.

Pages are Jinja2 templates with autoescaping on. Every console answer gets a
strict Content-Security-Policy (scripts only from /console/static, no inline
script or style), `X-Frame-Options: DENY`, `nosniff`, `no-store` and a
same-origin referrer policy (a stricter `no-referrer` would make browsers
send `Origin: null` on the console's own form posts).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/console"
MAX_FORM_BYTES = 64 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


class ConsoleError(Exception):
    """An error page: the status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LoginRequired(Exception):
    """No live session: the browser goes to the login page."""


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


templates = Environment(
    loader=PackageLoader("ztgate.console", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["when"] = _when


def render(template: str, status_code: int = 200, /, **context: Any) -> HTMLResponse:
    """The template rendered with `context` (autoescaped)."""
    context.setdefault("viewer", None)
    context.setdefault("page", "")
    text = templates.get_template(template).render(prefix=PREFIX, **context)
    return HTMLResponse(text, status_code, headers={"cache-control": "no-store"})


def error_page(error: ConsoleError, viewer: Any = None) -> HTMLResponse:
    """The error page of `error`."""
    return render("error.html", error.status, message=error.message, viewer=viewer)


class SecurityHeaders:
    """ASGI middleware: the console's security headers on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to the response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode("latin-1").lower() not in HEADERS
                ]
                headers += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def own_origin(request: Request) -> str:
    """This request's origin as a browser would name it: scheme://host[:port]."""
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}"


def same_origin(request: Request) -> bool:
    """False if the request carries an Origin header naming another origin (or "null")."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return hmac.compare_digest(origin.encode(), own_origin(request).encode())


async def read_form(request: Request) -> dict[str, str]:
    """The url-encoded form of a POST (the last value of each field).

    Raises:
        ConsoleError: not a url-encoded form, too large, or not UTF-8.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM_TYPE:
        raise ConsoleError(415, "send a form (application/x-www-form-urlencoded)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ConsoleError(413, "the form is too large")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConsoleError(400, "the form is not valid UTF-8") from exc
    return dict(pairs)


def client_address(request: Request) -> str:
    """The peer's address (proxy headers are not trusted)."""
    return request.client.host if request.client else "unknown"


def field(form: Mapping[str, str], name: str, max_chars: int = 1000) -> str:
    """A form field, at most `max_chars` long.

    Raises:
        ConsoleError: the field is longer.
    """
    value = form.get(name, "")
    if len(value) > max_chars:
        raise ConsoleError(422, f"{name} has at most {max_chars} characters")
    return value
