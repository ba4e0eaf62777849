"""Reading what a proxy client asks for: the request line, the headers, the authority.

The egress proxy reads one request head (bounded in size), then either
tunnels (`CONNECT host:port`) or forwards one plain-HTTP request given in
absolute form (`GET http://host[:port]/path HTTP/1.1`). Anything else is
refused. Parsing is strict: a head that is not clearly HTTP/1.x, a host that
is not a plain DNS name or IP address, a port that is not a decimal number in
range — each is an error, never a guess (fail closed).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

MAX_HOST_LENGTH = 253
# RFC 9110 token characters, for methods and header names.
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")
_VERSION = re.compile(rb"HTTP/1\.[01]")
_TARGET = re.compile(rb"[\x21-\x7e]+")  # no controls, no bare CR or LF, no spaces
# Header values: visible ASCII, space and tab, and obs-text (RFC 9110 5.5).
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
# Hop-by-hop fields (RFC 9110 7.6.1), and the proxy's own, never forwarded.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        # An agent's warrant and proof (egress/agents.py) are for the proxy alone.
        b"ztgate-warrant",
        b"ztgate-proof",
    }
)


class RequestError(Exception):
    """A request head the proxy will not act on; the message is the reason (one line)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class Authority:
    """A destination: a lower-case host name or IP address text, and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    """One request head: what to reach, and (plain HTTP) the head to send there."""

    method: str
    destination: Authority
    tunnel: bool  # CONNECT: bytes are relayed as they are after a 200
    headers: tuple[tuple[bytes, bytes], ...]
    target: bytes = b""  # plain HTTP: the origin-form target (path and query)
    version: bytes = b"HTTP/1.1"

    def header(self, name: bytes) -> bytes | None:
        """The value of the first header called `name` (lower case), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def upstream_head(self) -> bytes:
        """The head to send to the origin server: origin-form, no hop-by-hop fields.

        One request per connection: `Connection: close` is sent, and whatever
        the client sends after this head goes to the same destination.
        """
        lines = [b"%s %s %s" % (self.method.encode(), self.target, self.version)]
        lines.extend(
            key + b": " + value for key, value in self.headers if key.lower() not in HOP_BY_HOP
        )
        lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n"


def parse_authority(text: str, *, default_port: int | None = None) -> Authority:
    """`host:port` (or `[v6]:port`) as a destination, lower case; the port may default.

    Raises:
        RequestError: not a plain host name or IP address with a port in 1-65535.
    """
    if not text or not text.isascii() or any(c in text for c in "@/\\?#%\x00 \t"):
        raise RequestError("the destination is not a host and port")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise RequestError("the destination is not a host and port")
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise RequestError("the destination's IPv6 address is not valid") from exc
        host = str(address)
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            raise RequestError("the destination is not a host and port")
    else:
        host, sep, port_text_found = text.rpartition(":")
        if not sep:
            host, port_text = text, None
        else:
            port_text = port_text_found
        host = _host_name(host)
    return Authority(host, _port(port_text, default_port))


def _host_name(text: str) -> str:
    host = text.lower().removesuffix(".")
    if not host or len(host) > MAX_HOST_LENGTH:
        raise RequestError("the destination's host is not a valid name")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    if not all(_LABEL.fullmatch(label) for label in host.split(".")):
        raise RequestError("the destination's host is not a valid name")
    return host


def _port(text: str | None, default: int | None) -> int:
    if text is None:
        if default is None:
            raise RequestError("the destination has no port")
        return default
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise RequestError("the destination's port is not a number in 1-65535")
    return int(text)


def parse_head(head: bytes) -> ProxyRequest:
    """The request in `head` (the bytes up to and including the blank line).

    Raises:
        RequestError: not a CONNECT or an absolute-form http:// request in HTTP/1.x.
    """
    lines = head.split(b"\r\n")
    while lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise RequestError("empty request")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _VERSION.fullmatch(parts[2]):
        raise RequestError("the request line is not HTTP/1.x")
    method, target, version = parts[0].decode(), parts[1], parts[2]
    headers = _headers(lines[1:])
    if not _TARGET.fullmatch(target):
        raise RequestError("the request target is not visible ASCII")
    text = target.decode("ascii")
    if method == "CONNECT":
        return ProxyRequest(method, parse_authority(text), True, headers, version=version)
    authority, path = _absolute_http(text)
    request = ProxyRequest(method, authority, False, headers, path.encode(), version)
    _one_framing(headers)
    host = request.header(b"host")
    # The origin picks a virtual host by this header: it must be the URL's host,
    # or an allowed name would carry a request for any other name on that server.
    if host is not None and _host_header(host) != authority:
        raise RequestError("the Host header names another host than the URL")
    return request


def _one_framing(headers: tuple[tuple[bytes, bytes], ...]) -> None:
    """One Host, one Content-Length, no Transfer-Encoding: nothing for an origin to read twice.

    A second Host header could name another virtual host than the one
    checked; a chunked body relayed without its header (hop-by-hop, not
    forwarded) could be read by the origin as a second request.

    Raises:
        RequestError: a duplicated Host or Content-Length, or any Transfer-Encoding.
    """
    names = [key.lower() for key, _ in headers]
    for name in (b"host", b"content-length"):
        if names.count(name) > 1:
            raise RequestError(f"more than one {name.decode().title()} header")
    if b"transfer-encoding" in names:
        raise RequestError("Transfer-Encoding is not relayed: send a Content-Length body")


def _host_header(value: bytes) -> Authority | None:
    try:
        return parse_authority(value.decode("ascii"), default_port=80)
    except (UnicodeDecodeError, RequestError):
        return None


def _absolute_http(target: str) -> tuple[Authority, str]:
    scheme, sep, rest = target.partition("://")
    if not sep:
        raise RequestError("a proxy request must name an absolute http:// URL (or CONNECT)")
    if scheme.lower() != "http":
        raise RequestError("only http:// is forwarded; use CONNECT for https://")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if "#" in path or any(c in path for c in " \t\\"):
        raise RequestError("the request target is not a valid URL")
    if not path.startswith("/"):
        path = "/" + path
    return parse_authority(authority, default_port=80), path


def _headers(lines: list[bytes]) -> tuple[tuple[bytes, bytes], ...]:
    headers = []
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise RequestError("a header line is not valid")  # also obs-fold (RFC 9112 5.2)
        value = value.strip(b" \t")
        if not _FIELD_VALUE.fullmatch(value):
            raise RequestError("a header value is not valid")
        headers.append((name, value))
    return tuple(headers)


def basic_credentials(value: bytes | None) -> tuple[str, str] | None:
    """The user and password of a `Proxy-Authorization: Basic` value, or None."""
    if value is None:
        return None
    scheme, _, encoded = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def bearer_token(value: bytes | None) -> str | None:
    """The token of a `Proxy-Authorization: Bearer` value (RFC 6750's characters), or None."""
    if value is None:
        return None
    scheme, _, token = value.strip().partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not _BEARER.fullmatch(token):
        return None
    return token.decode("ascii")


_BEARER = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")


# An agent's connection is a call of this tool (egress/agents.py), whose
# arguments its proof signs: the SDK builds them as the proxy does, from here.
EGRESS_TOOL = "egress"


def egress_arguments(method: str, host: str, port: int) -> dict[str, Any]:
    """The arguments of the `egress` call a connection is: what its proof signs."""
    return {"method": method, "host": host, "port": port}
