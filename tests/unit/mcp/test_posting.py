"""POSTs on connections of our own: what is sent, and every kind of answer, against a raw server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from ztgate.errors import UpstreamError
from ztgate.mcp.posting import Poster

JSON_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
    b'Content-Length: 12\r\n\r\n{"ok": true}'
)


class Raw:
    """A loopback server that records each request and answers with `answer(request)`."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.connections = 0
        self.answer: Callable[[bytes], bytes | None] = lambda _request: JSON_OK
        self.close_after = False
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = self.answer(request)
                if answer is None:  # no answer: hang up
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw() -> AsyncIterator[Raw]:
    server = Raw()
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}/mcp"
    try:
        yield server
    finally:
        listening.close()


@pytest.fixture
async def poster() -> AsyncIterator[Poster]:
    poster = Poster(max_result_bytes=1024, connections=4)
    try:
        yield poster
    finally:
        poster.close()


async def test_a_post_is_one_request_with_its_headers_and_length(raw: Raw, poster: Poster) -> None:
    answer = await poster.post(raw.url, b'{"a": 1}', {"Accept": "application/json"}, 5)
    assert answer == (200, "application/json", b'{"ok": true}')
    (request,) = raw.requests
    host = raw.url.removeprefix("http://").removesuffix("/mcp")
    assert request == (
        f"POST /mcp HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n".encode()
        + b'Content-Length: 8\r\n\r\n{"a": 1}'
    )


async def test_a_connection_is_kept_for_the_next_post(raw: Raw, poster: Poster) -> None:
    for _ in range(3):
        await poster.post(raw.url, b"{}", {}, 5)
    assert raw.connections == 1 and len(raw.requests) == 3


async def test_concurrent_posts_each_get_their_own_answer(raw: Raw, poster: Poster) -> None:
    def echo(request: bytes) -> bytes:
        body = request.partition(b"\r\n\r\n")[2]
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    raw.answer = echo
    answers = await asyncio.gather(
        *(poster.post(raw.url, str(n).encode(), {}, 5) for n in range(10))
    )
    assert [body for _, _, body in answers] == [str(n).encode() for n in range(10)]
    assert raw.connections <= 4  # the pool's bound


async def test_a_chunked_event_stream_is_read_whole(raw: Raw, poster: Poster) -> None:
    raw.answer = lambda _r: (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\nevent:\r\n9\r\n message\n\r\n0\r\n\r\n"
    )
    assert await poster.post(raw.url, b"{}", {}, 5) == (
        200,
        "text/event-stream",
        b"event: message\n",
    )


async def test_a_body_that_ends_with_the_connection_is_read_whole(raw: Raw, poster: Poster) -> None:
    raw.answer = lambda _r: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
    raw.close_after = True
    answer = await poster.post(raw.url, b"{}", {}, 5)
    assert answer == (200, "application/octet-stream", b"until the end")  # no type: as aiohttp
    await poster.post(raw.url, b"{}", {}, 5)
    assert raw.connections == 2  # not reused


async def test_an_informational_answer_is_skipped(raw: Raw, poster: Poster) -> None:
    raw.answer = lambda _r: b"HTTP/1.1 100 Continue\r\n\r\n" + JSON_OK
    assert (await poster.post(raw.url, b"{}", {}, 5))[0] == 200


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"200\r\n" + b"x" * 512 + b"\r\n" + b"200\r\n" + b"x" * 512 + b"\r\n"
        + b"200\r\n" + b"x" * 512 + b"\r\n0\r\n\r\n",
    ],
    ids=["declared", "chunked"],
)  # fmt: skip
async def test_an_answer_over_the_limit_is_refused(raw: Raw, poster: Poster, answer: bytes) -> None:
    raw.answer = lambda _r: answer
    with pytest.raises(UpstreamError, match="larger than 1024 bytes"):
        await poster.post(raw.url, b"{}", {}, 5)
    raw.answer = lambda _r: JSON_OK
    await poster.post(raw.url, b"{}", {}, 5)
    assert raw.connections == 2  # the refused answer's connection was closed


async def test_no_answer_in_time_is_a_timeout_and_the_connection_is_dropped(
    raw: Raw, poster: Poster
) -> None:
    raw.answer = lambda _r: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"
    with pytest.raises(UpstreamError, match=r"did not answer within 0\.2s") as raised:
        await poster.post(raw.url, b"{}", {}, 0.2)
    assert raised.value.timeout
    raw.answer = lambda _r: JSON_OK
    assert (await poster.post(raw.url, b"{}", {}, 5))[2] == b'{"ok": true}'
    assert raw.connections == 2


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (None, "closed the connection"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ncut", "closed the connection"),
        (b"SMTP ready\r\n\r\n", "malformed HTTP"),
    ],
)
async def test_a_broken_answer_is_an_upstream_error(
    raw: Raw, poster: Poster, answer: bytes | None, said: str
) -> None:
    raw.answer = lambda _r: answer
    raw.close_after = True
    with pytest.raises(UpstreamError, match=said) as raised:
        await poster.post(raw.url, b"{}", {}, 5)
    assert not raised.value.timeout


async def test_nobody_listening_is_unreachable(poster: Poster) -> None:
    listening = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    listening.close()
    await listening.wait_closed()
    with pytest.raises(UpstreamError, match="unreachable"):
        await poster.post(f"http://127.0.0.1:{port}/mcp", b"{}", {}, 5)


@pytest.mark.parametrize(
    "headers",
    [{"X-Evil": "a\r\nInjected: yes"}, {"X-Evil\nInjected": "yes"}, {"X-Text": "caf\u00e9 \u2603"}],
)
async def test_a_header_that_would_break_the_request_is_refused(
    raw: Raw, poster: Poster, headers: dict[str, str]
) -> None:
    with pytest.raises(UpstreamError):
        await poster.post(raw.url, b"{}", headers, 5)
    assert raw.requests == []


async def test_a_second_answer_to_one_request_drops_the_connection(
    raw: Raw, poster: Poster
) -> None:
    raw.answer = lambda _r: JSON_OK + JSON_OK
    await poster.post(raw.url, b"{}", {}, 5)
    raw.answer = lambda _r: JSON_OK
    await poster.post(raw.url, b"{}", {}, 5)
    assert raw.connections == 2
