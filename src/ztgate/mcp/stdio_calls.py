"""`tools/call` to a stdio upstream, written straight to the server's pipes.

A stdio server reads newline-delimited JSON-RPC on its stdin and answers on
its stdout. ztgate owns that pair of pipes (`StdioPipes`, the transport the
SDK's `Client` is opened on): the session's handshake, `tools/list`, change
notifications, resources, prompts and whatever the server asks of the client
still go through the SDK, message for message as its own stdio transport
passes them; a `tools/call` (`StdioToolCaller`) is one line written and the
line with its id read back. The SDK's client costs more CPU per call (its
request machinery, a task hand-off each way, pydantic models both ways) than
the write and the read themselves.

The direct calls use ids of their own (`"ztgate-<n>"`: strings, where the
SDK's are integers), so an answer is routed by its id alone; every other
line goes to the SDK, parsed as the SDK's transport parses it. An answer
larger than the result limit is refused, as the forwarder refuses an HTTP
one; a server that exits fails the calls waiting on it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final

import anyio
import mcp_types as types
import orjson
from anyio.abc import AsyncResource
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client._transport import TransportStreams
from mcp.client.stdio import StdioServerParameters, get_default_environment
from mcp.shared.message import SessionMessage

from ztgate.errors import UpstreamError
from ztgate.mcp.http_calls import call_params, tool_result_of
from ztgate.models import ToolResult

logger = logging.getLogger(__name__)

_Read = SessionMessage | Exception
_PREFIX: Final = "ztgate-"
_CHUNK: Final = 65536
# Messages for the SDK may wait here while its session is busy, so that the
# answers to direct calls behind them are not held up.
_SDK_BUFFER: Final = 64
# The shutdown of the MCP spec: close stdin, wait, then terminate, then kill.
_EXIT_SECONDS: Final = 2.0
_POLL_SECONDS: Final = 0.01
# The longest line a server may write (for the SDK's messages too, which the
# result limit does not cover): a server writing more without a line break
# is stopped, not buffered without end.
_MAX_LINE_BYTES: Final = 64 * 1024 * 1024


class StdioPipes:
    """A stdio MCP server's process: the SDK's transport, and direct requests over its pipes.

    Enter it (as the SDK's `Client` does, as its transport) to start the
    server; leaving stops it.
    """

    def __init__(self, params: StdioServerParameters, *, max_result_bytes: int | None) -> None:
        """Run the server `params` name; answers to direct requests larger than
        `max_result_bytes` are refused (None: no limit)."""
        self.params = params
        self.max_result_bytes = max_result_bytes
        self.process: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ended: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._to_sdk: MemoryObjectSendStream[_Read] | None = None
        self._streams: tuple[AsyncResource, ...] = ()

    async def __aenter__(self) -> TransportStreams:
        """Start the server; the SDK's read and write streams.

        Raises:
            OSError: the command could not be started.
        """
        params = self.params
        self.process = await asyncio.create_subprocess_exec(
            params.command,
            *params.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=get_default_environment() | (params.env or {}),
            cwd=params.cwd,
            start_new_session=True,  # its own process group: stopped as a whole
        )
        stdin, stdout = self.process.stdin, self.process.stdout
        if stdin is None or stdout is None:  # asked for above: never so
            raise OSError("the MCP server was started without pipes")
        to_sdk, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](
            _SDK_BUFFER
        )
        write_stream, from_sdk = anyio.create_memory_object_stream[SessionMessage](0)
        self._to_sdk = to_sdk
        self._streams = (read_stream, write_stream, to_sdk, from_sdk)
        self._tasks = [
            asyncio.create_task(self._read(stdout, to_sdk)),
            asyncio.create_task(self._write(stdin, from_sdk)),
        ]
        return read_stream, write_stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server (stdin closed, then terminated, then killed) and the pipe tasks."""
        process = self.process
        if process is None:
            return
        self._end("the MCP server's session was closed")
        with anyio.CancelScope(shield=True):
            if process.stdin is not None:
                process.stdin.close()
            await _stop(process)
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for stream in self._streams:
                await stream.aclose()

    async def request(self, method: str, params: Mapping[str, Any], timeout: float) -> Any:
        """Send a request of ours and wait for its answer: the `result` of a success.

        Raises:
            UpstreamError: the server is not running or exits, answers an
                error, too much or no result, or not within `timeout`
                (`timeout=True`).
        """
        process = self.process
        if self._ended is not None or process is None or process.stdin is None:
            raise UpstreamError(self._ended or "the MCP server is not running")
        request_id = f"{_PREFIX}{next(self._ids)}"
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        line = orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[request_id] = answer
        expiry = loop.call_later(timeout, _expire, answer)
        try:
            process.stdin.write(line)
            await process.stdin.drain()
            message = await answer
        except TimeoutError as exc:
            self._cancel(request_id)
            raise UpstreamError(f"{method} timed out after {timeout:g}s", timeout=True) from exc
        except (OSError, RuntimeError) as exc:  # the pipe broke, the transport closed
            raise UpstreamError(f"the MCP server's stdin is closed: {exc}") from exc
        finally:
            expiry.cancel()
            self._pending.pop(request_id, None)
        error = message.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            text = error.get("message") if isinstance(error, dict) else None
            raise UpstreamError(f"{method} failed: {text or 'an error'} ({code})")
        return message.get("result")

    def _cancel(self, request_id: str) -> None:
        """Tell the server a request of ours is abandoned (the spec's courtesy; best effort)."""
        process = self.process
        if process is None or process.stdin is None or self._ended is not None:
            return
        note = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": "timed out"},
        }
        with contextlib.suppress(OSError, RuntimeError):
            process.stdin.write(orjson.dumps(note) + b"\n")

    async def _read(
        self, stdout: asyncio.StreamReader, to_sdk: MemoryObjectSendStream[_Read]
    ) -> None:
        """Route the server's stdout: the answers to our requests settled, the rest to the SDK."""
        partial: list[bytes] = []  # a line's pieces so far (joined once, when it ends)
        pending = 0  # their size
        longest = max(_MAX_LINE_BYTES, self.max_result_bytes or 0)
        why = "the MCP server exited"
        try:
            while chunk := await stdout.read(_CHUNK):
                partial.append(chunk)
                if b"\n" not in chunk:
                    pending += len(chunk)
                    if pending > longest:
                        why = f"the MCP server wrote a line longer than {longest} bytes"
                        logger.error("%s: stopping it", why)
                        self._kill()
                        break
                    continue
                lines = b"".join(partial).split(b"\n")
                partial = [lines.pop()]
                pending = len(partial[0])
                for line in lines:
                    if not self._answered(line):
                        await to_sdk.send(_parse_line(line))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            why = "the MCP server's session was closed"
        except OSError as exc:
            why = f"reading from the MCP server failed: {exc}"
        finally:
            self._end(why)
            await to_sdk.aclose()

    def _answered(self, line: bytes) -> bool:
        """Whether `line` answers one of our requests (then it is settled here)."""
        if not self._pending:
            return False
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            return False
        request_id = message.get("id") if isinstance(message, dict) else None
        answer = self._pending.pop(request_id, None) if isinstance(request_id, str) else None
        if answer is None:
            return False
        if answer.done():  # it expired meanwhile
            return True
        limit = self.max_result_bytes
        if limit is not None and len(line) > limit:
            answer.set_exception(UpstreamError(f"result is larger than {limit} bytes"))
        elif "result" not in message and "error" not in message:
            answer.set_exception(UpstreamError("the MCP server answered no result and no error"))
        else:
            answer.set_result(message)
        return True

    async def _write(
        self, stdin: asyncio.StreamWriter, from_sdk: MemoryObjectReceiveStream[SessionMessage]
    ) -> None:
        """Write the SDK's messages to the server's stdin, as the SDK's stdio transport does."""
        try:
            async for session_message in from_sdk:
                message = session_message.message
                data = message.model_dump_json(by_alias=True, exclude_unset=True).encode()
                stdin.write(data + b"\n")
                await stdin.drain()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError, RuntimeError):
            # The server may still run: ending the read side tells the SDK the session ended.
            if self._to_sdk is not None:
                await self._to_sdk.aclose()

    def _kill(self) -> None:
        """Kill the server's process group at once (it misbehaves)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def _end(self, why: str) -> None:
        """No more answers will come: fail the requests still waiting."""
        if self._ended is None:
            self._ended = why
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(UpstreamError(why))
        self._pending.clear()


class StdioToolCaller:
    """Calls the tools of one stdio upstream, a line each way over its pipes."""

    def __init__(self, pipes: StdioPipes, protocol_version: str) -> None:
        """Call over `pipes`, whose server negotiated `protocol_version` with the SDK's client."""
        self.pipes = pipes
        self.protocol_version = protocol_version

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any],
        input_schema: Mapping[str, Any],
        timeout: float,
    ) -> ToolResult:
        """Run tool `name` of the server with `arguments` (`input_schema` is not needed here).

        Raises:
            UpstreamError: the server is gone, fails, times out, or answers
                something that is not a `tools/call` result.
        """
        started = time.perf_counter()
        params = call_params(name, arguments, self.protocol_version)
        try:
            result = await self.pipes.request("tools/call", params, timeout)
        except UpstreamError as exc:
            raise UpstreamError(f"MCP tool {name}: {exc.message}", timeout=exc.timeout) from exc
        return tool_result_of(name, result, time.perf_counter() - started)

    def forget(self) -> None:
        """Nothing is derived from the tools' schemas here."""


def _expire(answer: asyncio.Future[dict[str, Any]]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError())


def _parse_line(line: bytes) -> SessionMessage | Exception:
    """A line for the SDK, parsed as its stdio transport parses it (errors passed on as values)."""
    try:
        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValueError as exc:
        logger.warning("the MCP server wrote a line that is not a JSON-RPC message: %s", exc)
        return exc
    return SessionMessage(message)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Wait for the process to exit; terminate its group, then kill it, if it does not."""
    for sent in (None, signal.SIGTERM, signal.SIGKILL):
        if sent is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sent)
        if await _exited(process, _EXIT_SECONDS):
            return
    logger.warning("MCP server process %d is still alive after SIGKILL", process.pid)


async def _exited(process: asyncio.subprocess.Process, seconds: float) -> bool:
    """Whether the process exited within `seconds` (polled: `wait()` also waits for the pipes)."""
    deadline = time.monotonic() + seconds
    while process.returncode is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_SECONDS)
    return True
