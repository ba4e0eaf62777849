"""A tool server for an evaluation: every tool is one path, run by a Python function.

The gateway forwards an allowed call here (`POST /<tool>` with the
arguments as a JSON object); the handler runs it against whatever state the
evaluation holds (an AgentDojo environment) and answers
`{"result": ...}`, or `{"error": "..."}` when the function raised (the
agent reads the error as it would read any tool's answer). Loopback only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[str, Mapping[str, Any]], Any]
MAX_BODY = 4 * 1_048_576


class ToolServer:
    """`POST /<tool>` runs `handler(tool, arguments)`; started on an ephemeral loopback port."""

    def __init__(self, handler: Handler) -> None:
        """Serve `handler` (called in the server's thread, one call at a time)."""
        self._handler = handler
        self._lock = threading.Lock()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        server = self

        class _Request(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length > MAX_BODY:
                    self._answer(413, {"error": "too large"})
                    return
                try:
                    arguments = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._answer(400, {"error": "not JSON"})
                    return
                tool = self.path.strip("/")
                self._answer(200, server.run(tool, arguments))

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body, default=str).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Request)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def run(self, tool: str, arguments: Any) -> dict[str, Any]:
        """Run one call (what the HTTP handler does), recording it."""
        if not isinstance(arguments, dict):
            return {"error": "the arguments must be a JSON object"}
        with self._lock:
            self.calls.append((tool, arguments))
            try:
                return {"result": self._handler(tool, arguments)}
            except Exception as exc:  # the function's own error, as AgentDojo reports it
                return {"error": f"{type(exc).__name__}: {exc}"}

    @property
    def url(self) -> str:
        """The server's base URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ToolServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
