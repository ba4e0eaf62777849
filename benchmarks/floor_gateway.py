"""The floor of a Python MCP gateway: only the work no checking gateway can skip.

    python benchmarks/floor_gateway.py LISTEN_PORT UPSTREAM_URL

`benchmarks/mcp_calls.py` puts it in front of the Streamable HTTP server, as
it does ztgate. For each `tools/call` it does what ztgate must do at the
least, with the same parts ztgate uses, and nothing else:

- serve HTTP with uvicorn on uvloop and httptools, and read the JSON-RPC body
  (orjson);
- verify one ES256 signature (a fixed one: the signature step of a proof
  check, which a per-call proof can never skip or cache);
- commit a decision record before the call, and a result record after it,
  each one INSERT and COMMIT on an SQLite database in WAL mode with
  `synchronous=NORMAL` (ztgate's audit default);
- POST the body upstream with ztgate's own pooled client
  (`ztgate.mcp.posting.Poster`), and answer with the upstream's bytes.

No identity, warrant, schema, limits, guards, policy, approvals, hash chain
or metrics. What this adds to a call is what any Python gateway with
per-call proofs and a write-ahead audit log adds on this machine before its
first real check; the gap between it and ztgate is what ztgate's checks
cost. Other requests (the handshake, `tools/list`, notifications) are
relayed with httpx, outside the measured calls.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx2
import orjson
import uvicorn
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ztgate.mcp.posting import Poster

# The request headers a Streamable HTTP call carries that the upstream reads.
_FORWARDED = frozenset(
    {
        b"content-type",
        b"accept",
        b"mcp-protocol-version",
        b"mcp-method",
        b"mcp-name",
        b"mcp-session-id",
        b"last-event-id",
    }
)
_SIGNED = b"a proof's signing input" * 16
_ALGORITHM = ec.ECDSA(hashes.SHA256())


class FloorGateway:
    """ASGI: `tools/call` with the unavoidable work, anything else relayed."""

    def __init__(self, upstream: str, database: Path) -> None:
        self.upstream = upstream
        key = ec.generate_private_key(ec.SECP256R1())
        self._public = key.public_key()
        self._signature = key.sign(_SIGNED, _ALGORITHM)
        self._db = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, kind TEXT, body TEXT)")
        self._poster: Poster | None = None
        self._relay: httpx2.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":  # no standalone event stream: the client does without
            await _answer(send, 405, b"", [])
            return
        body = await _body(receive)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        message = orjson.loads(body) if body else None
        if not (isinstance(message, dict) and message.get("method") == "tools/call"):
            await self._relayed(scope["method"], body, headers, send)
            return
        self._public.verify(self._signature, _SIGNED, _ALGORITHM)
        self._record("decision", orjson.dumps(message["params"]).decode())
        if self._poster is None:
            self._poster = Poster(max_result_bytes=1 << 20, connections=64)
        forwarded = {k: v for k, v in headers.items() if k.encode("latin-1") in _FORWARDED}
        status, content_type, answer = await self._poster.post(self.upstream, body, forwarded, 60.0)
        self._record("result", answer.decode())
        await _answer(send, status, answer, [(b"content-type", content_type.encode())])

    def _record(self, kind: str, body: str) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("INSERT INTO records (kind, body) VALUES (?, ?)", (kind, body))
        self._db.execute("COMMIT")

    async def _relayed(self, method: str, body: bytes, headers: dict[str, str], send: Any) -> None:
        if self._relay is None:
            self._relay = httpx2.AsyncClient(timeout=60)
        kept = {k: v for k, v in headers.items() if k.encode("latin-1") in _FORWARDED}
        answer = await self._relay.request(method, self.upstream, content=body, headers=kept)
        passed = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in answer.headers.items()
            if k.lower() in ("content-type", "mcp-session-id")
        ]
        await _answer(send, answer.status_code, answer.content, passed)


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="ztgate-floor-") as scratch:
        app = FloorGateway(sys.argv[2], Path(scratch) / "audit.db")
        uvicorn.run(
            app,
            host="127.0.0.1",
            port=int(sys.argv[1]),
            loop="uvloop",
            http="httptools",
            log_level="warning",
            access_log=False,
        )
