"""A small tool server for the integration tests, run as its own process.

    python upstream_server.py

It binds two ephemeral loopback ports and prints them as one JSON line on
standard output: `port` serves the HTTP tools below (Starlette under uvicorn),
`close_port` accepts TCP connections, reads the request and closes the
connection without answering.

Every POST is recorded (path, the gateway's `X-Ztgate-Call-Id`, arguments), so
a test can tell whether a call reached the tool: `GET /received` lists them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

# Larger than any `max_result_bytes` the tests configure (4096).
BIG_BYTES = 64 * 1024
# What the output-schema tool puts in a result the gateway must withhold.
LEAK_MARKER = "LEAK-MARKER-must-not-reach-the-agent"


def create_app() -> Starlette:
    """The tool server."""
    received: list[dict[str, Any]] = []

    async def record(request: Request) -> Any:
        body = await request.body()
        try:
            args = json.loads(body) if body else None
        except ValueError:
            args = None
        received.append(
            {
                "path": request.url.path,
                "call_id": request.headers.get("x-ztgate-call-id"),
                "arguments": args,
            }
        )
        return args

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"echo": await record(request)})

    async def sink(request: Request) -> JSONResponse:
        args = await record(request) or {}
        return JSONResponse({"keys": sorted(args), "bytes": len(json.dumps(args))})

    async def sleep(request: Request) -> JSONResponse:
        args = await record(request) or {}
        seconds = float(args.get("seconds", 5))
        await asyncio.sleep(seconds)
        return JSONResponse({"slept": seconds})

    async def fail(request: Request) -> JSONResponse:
        await record(request)
        return JSONResponse({"error": "internal failure in the tool"}, status_code=500)

    async def not_json(request: Request) -> Response:
        await record(request)
        return Response(b"<html>this is not JSON</html>", media_type="application/json")

    async def plain_text(request: Request) -> Response:
        await record(request)
        return PlainTextResponse("plain text, not JSON")

    async def big(request: Request) -> Response:
        await record(request)
        payload = json.dumps({"blob": "x" * BIG_BYTES}).encode()
        return Response(payload, media_type="application/json")

    async def big_chunked(request: Request) -> StreamingResponse:
        await record(request)

        async def chunks() -> Any:
            yield b'{"blob": "'
            for _ in range(BIG_BYTES // 1024):
                yield b"x" * 1024
            yield b'"}'

        # No Content-Length: uvicorn sends it with chunked transfer encoding.
        return StreamingResponse(chunks(), media_type="application/json")

    async def shaped(request: Request) -> JSONResponse:
        args = await record(request) or {}
        # With "leak", the result breaks the tool's output schema and carries
        # a marker the tests look for in everything the agent receives.
        count = LEAK_MARKER if args.get("leak") else args.get("count")
        return JSONResponse({"count": count})

    async def received_calls(request: Request) -> JSONResponse:
        prefix = request.query_params.get("path", "")
        return JSONResponse([r for r in received if r["path"].startswith(prefix)])

    return Starlette(
        routes=[
            Route("/echo", echo, methods=["POST"]),
            Route("/echo/{tag}", echo, methods=["POST"]),
            Route("/sink", sink, methods=["POST"]),
            Route("/sleep", sleep, methods=["POST"]),
            Route("/fail", fail, methods=["POST"]),
            Route("/notjson", not_json, methods=["POST"]),
            Route("/text", plain_text, methods=["POST"]),
            Route("/big", big, methods=["POST"]),
            Route("/big-chunked", big_chunked, methods=["POST"]),
            Route("/shaped", shaped, methods=["POST"]),
            Route("/received", received_calls, methods=["GET"]),
        ]
    )


async def _close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.read(65536)
    finally:
        writer.close()


def _bind() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


async def main() -> None:
    """Serve until terminated."""
    http_sock, close_sock = _bind(), _bind()
    closer = await asyncio.start_server(_close_at_once, sock=close_sock)
    config = uvicorn.Config(
        create_app(), loop="asyncio", log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    sys.stdout.write(
        json.dumps({"port": http_sock.getsockname()[1], "close_port": close_sock.getsockname()[1]})
        + "\n"
    )
    sys.stdout.flush()
    try:
        await server.serve(sockets=[http_sock])
    finally:
        closer.close()


if __name__ == "__main__":
    asyncio.run(main())
