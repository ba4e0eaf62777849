"""Reading a request body within limits, and parsing the call envelope."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from ztgate.http.body import CallRequest, parse_call_request, read_body
from ztgate.http.problems import Problem

LIMIT = 64


class Body:
    """An ASGI receive callable serving `chunks`, counting how many were taken."""

    def __init__(self, chunks: Sequence[bytes], *, disconnect: bool = False) -> None:
        self.chunks = list(chunks)
        self.taken = 0
        self.disconnect = disconnect

    async def __call__(self) -> Message:
        if self.taken >= len(self.chunks):
            if self.disconnect:
                return {"type": "http.disconnect"}
            raise AssertionError("read past the end of the body")
        chunk = self.chunks[self.taken]
        self.taken += 1
        more = self.taken < len(self.chunks) or self.disconnect
        return {"type": "http.request", "body": chunk, "more_body": more}


def make_request(
    body: Body,
    content_type: str | None = "application/json",
    content_length: str | None = None,
) -> Request:
    headers = []
    if content_type is not None:
        headers.append((b"content-type", content_type.encode("latin-1")))
    if content_length is not None:
        headers.append((b"content-length", content_length.encode()))
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/calls",
        "raw_path": b"/v1/calls",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8470),
    }
    return Request(scope, body)


async def read(body: Body, content_type: str | None = "application/json", **kw: str) -> bytes:
    return await read_body(make_request(body, content_type, **kw), LIMIT)


# -- content types -------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        'application/json; charset="utf-8"',
        "application/json; charset = utf-8",
        " application/json ",
    ],
)
async def test_json_in_utf8_is_accepted(content_type: str) -> None:
    assert await read(Body([b'{"tool": "x"}']), content_type) == b'{"tool": "x"}'


@pytest.mark.parametrize(
    ("content_type", "detail"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("text/plain", "application/json"),
        ("application/x-www-form-urlencoded", "application/json"),
        ("multipart/form-data; boundary=x", "application/json"),
        ("application/jsonx", "application/json"),
        ("application/problem+json", "application/json"),
        ("text/json", "application/json"),
        ("application/json; charset=latin-1", "UTF-8"),
        ("application/json; charset=utf-16", "UTF-8"),
        ("application/json; charset=utf8x", "UTF-8"),
    ],
)
async def test_anything_else_is_415_before_reading(content_type: str | None, detail: str) -> None:
    body = Body([b"{}"])
    with pytest.raises(Problem, match=detail) as caught:
        await read(body, content_type)
    assert (caught.value.status, caught.value.slug) == (415, "unsupported-media-type")
    assert body.taken == 0


# -- sizes -------------------------------------------------------------------------


async def test_a_body_at_the_limit_is_read_whole_from_many_chunks() -> None:
    chunks = [b"a" * 16, b"", b"b" * 16, b"c" * 32]
    assert await read(Body(chunks), content_length=str(LIMIT)) == b"".join(chunks)


async def test_an_empty_body_is_empty() -> None:
    assert await read(Body([b""]), content_length="0") == b""


async def test_a_declared_length_over_the_limit_is_413_before_reading() -> None:
    body = Body([b"x" * (LIMIT + 1)])
    with pytest.raises(Problem, match=f"larger than {LIMIT} bytes") as caught:
        await read(body, content_length=str(LIMIT + 1))
    assert (caught.value.status, caught.value.slug) == (413, "body-too-large")
    assert body.taken == 0


async def test_a_streamed_body_over_the_limit_is_413_as_soon_as_it_passes() -> None:
    body = Body([b"x" * 40] * 100)  # no Content-Length: chunked
    with pytest.raises(Problem) as caught:
        await read(body)
    assert caught.value.status == 413
    assert body.taken == 2  # stopped at the chunk that crossed the limit, not at the end


async def test_a_body_longer_than_its_declared_length_is_still_cut_at_the_limit() -> None:
    body = Body([b"x" * 40] * 3)
    with pytest.raises(Problem) as caught:
        await read(body, content_length="10")
    assert caught.value.status == 413


@pytest.mark.parametrize("declared", ["abc", "-1", "1e9", ""])
async def test_a_malformed_declared_length_falls_back_to_counting(declared: str) -> None:
    assert await read(Body([b"{}"]), content_length=declared) == b"{}"
    with pytest.raises(Problem) as caught:
        await read(Body([b"x" * (LIMIT + 1)]), content_length=declared)
    assert caught.value.status == 413


async def test_a_client_that_leaves_mid_body_is_a_disconnect() -> None:
    with pytest.raises(ClientDisconnect):
        await read(Body([b'{"tool": '], disconnect=True))


# -- the call envelope ---------------------------------------------------------------


def test_a_full_envelope_parses() -> None:
    parsed = parse_call_request(
        b'{"tool": "send_email", "arguments": {"to": "a@b.c", "n": [1, {"x": null}]},'
        b' "justification": "asked"}',
        32,
    )
    assert parsed == CallRequest(
        tool="send_email", arguments={"to": "a@b.c", "n": [1, {"x": None}]}, justification="asked"
    )


def test_arguments_and_justification_are_optional() -> None:
    parsed = parse_call_request(b'{"tool": "t"}', 32)
    assert (parsed.arguments, parsed.justification) == ({}, "")


@pytest.mark.parametrize(
    ("body", "slug"),
    [
        (b'{"tool": "x", "arguments": {', "malformed-json"),
        (b"", "malformed-json"),
        (b"not json", "malformed-json"),
        (b'{"tool": "x"} trailing', "malformed-json"),
        (b'{"tool": "\xff"}', "malformed-json"),  # not UTF-8
        (b'{"tool": "x", "arguments": {"a": NaN}}', "malformed-json"),
        (b'{"tool": "x", "arguments": {"a": 1e400}}', "malformed-json"),
        (b'{"tool": "x", "arguments": {"n": 123456789012345678901}}', "malformed-json"),
        (b'{"tool": "x", "arguments": {"a": [[[[[[[[[[]]]]]]]]]]}}', "json-too-deep"),
    ],
)
def test_bodies_that_are_not_acceptable_json_are_400(body: bytes, slug: str) -> None:
    with pytest.raises(Problem) as caught:
        parse_call_request(body, 8)
    assert (caught.value.status, caught.value.slug) == (400, slug)


def test_the_depth_limit_is_the_one_given() -> None:
    body = b'{"tool": "x", "arguments": {"a": [[[]]]}}'  # 5 levels
    assert parse_call_request(body, 5).arguments == {"a": [[[]]]}
    with pytest.raises(Problem, match="deeper than 4"):
        parse_call_request(body, 4)


@pytest.mark.parametrize("body", [b"[]", b'"tool"', b"1", b"null", b"true"])
def test_a_body_that_is_not_an_object_is_422(body: bytes) -> None:
    with pytest.raises(Problem, match="must be a JSON object") as caught:
        parse_call_request(body, 8)
    assert (caught.value.status, caught.value.slug) == (422, "invalid-request")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{}", "tool: Field required"),
        (b'{"arguments": {}}', "tool: Field required"),
        (b'{"tool": 1}', "tool: "),
        (b'{"tool": true}', "tool: "),
        (b'{"tool": null}', "tool: "),
        (b'{"tool": ["x"]}', "tool: "),
        (b'{"tool": ""}', "tool: "),
        (b'{"tool": "' + b"x" * 129 + b'"}', "tool: "),
        (b'{"tool": "x", "arguments": []}', "arguments: "),
        (b'{"tool": "x", "arguments": "{}"}', "arguments: "),
        (b'{"tool": "x", "arguments": null}', "arguments: "),
        (b'{"tool": "x", "justification": 1}', "justification: "),
        (b'{"tool": "x", "justification": null}', "justification: "),
        (b'{"tool": "x", "justification": "' + b"j" * 4001 + b'"}', "justification: "),
        (b'{"tool": "x", "extra": 1}', "unknown field"),
        (b'{"tool": "x", "Tool": "y"}', "unknown field"),
    ],
)
def test_an_object_that_is_not_a_call_is_422(body: bytes, detail: str) -> None:
    with pytest.raises(Problem) as caught:
        parse_call_request(body, 8)
    assert (caught.value.status, caught.value.slug) == (422, "invalid-request")
    assert detail in caught.value.detail


def test_limits_are_inclusive() -> None:
    body = b'{"tool": "' + b"x" * 128 + b'", "justification": "' + b"j" * 4000 + b'"}'
    parsed = parse_call_request(body, 8)
    assert (len(parsed.tool), len(parsed.justification)) == (128, 4000)


def test_422_details_do_not_echo_the_offending_value() -> None:
    with pytest.raises(Problem) as caught:
        parse_call_request(b'{"tool": "x", "justification": 424242424242}', 8)
    assert "424242424242" not in caught.value.detail


def test_422_details_do_not_echo_an_unknown_fields_name() -> None:
    """The agent chooses that name, and the detail goes into the audit log.

    As `schema/check.py` counts unexpected argument keys rather than naming them.
    """
    key = b"sk-live-51HcQ2eZvKYlo2C0aBcDeFgHiJkL"
    with pytest.raises(Problem) as caught:
        parse_call_request(b'{"tool": "x", "' + key + b'": 1}', 8)
    assert caught.value.status == 422
    assert "unknown field" in caught.value.detail
    assert key.decode() not in caught.value.detail
