"""Reading and parsing a request body at the edge, within limits."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from ztgate.errors import InvalidInputError
from ztgate.http.problems import Problem
from ztgate.jsonlimits import JsonTooDeepError, parse_json


class CallRequest(BaseModel):
    """The body of `POST /v1/calls`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    tool: str = Field(min_length=1, max_length=128, description="The registered tool's name.")
    arguments: dict[str, Any] = Field(
        default_factory=dict, description="The tool's arguments, valid against its JSON Schema."
    )
    justification: str = Field(
        "", max_length=4000, description="Why the agent makes this call (recorded with it)."
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused once it passes `limit` bytes.

    Raises:
        Problem: 413 when too large, 415 when not JSON.
    """
    media_type, _, params = request.headers.get("content-type", "").partition(";")
    if media_type.strip().lower() != "application/json":
        raise Problem(415, "unsupported-media-type", "send the call as application/json")
    charset = params.strip().lower()
    if charset and charset.replace(" ", "") not in {"charset=utf-8", 'charset="utf-8"'}:
        raise Problem(415, "unsupported-media-type", "the body must be UTF-8 JSON")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, "body-too-large", f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, "body-too-large", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_call_request(body: bytes, max_depth: int) -> CallRequest:
    """Parse and validate a call request body.

    Raises:
        Problem: 400 for malformed or too deeply nested JSON, 422 for a body
            that does not fit `CallRequest`.
    """
    try:
        payload = parse_json(body, max_depth=max_depth)
    except JsonTooDeepError as exc:
        raise Problem(400, "json-too-deep", exc.message) from exc
    except InvalidInputError as exc:
        raise Problem(400, "malformed-json", exc.message) from exc
    if not isinstance(payload, dict):
        raise Problem(422, "invalid-request", "the body must be a JSON object")
    try:
        return CallRequest.model_validate(payload)
    except ValidationError as exc:
        raise Problem(422, "invalid-request", _first_error(exc)) from exc


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    unknown = sum(1 for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        # Field names come from the agent: counted, not echoed (they reach the audit log).
        return f"{unknown} unknown field{'s' if unknown > 1 else ''} in the body"
    error = errors[0]
    location = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{location}: {error['msg']}"
