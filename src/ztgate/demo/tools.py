"""Demo tools: a tiny HTTP tool server that follows the upstream contract.

Each tool takes a JSON object of arguments by POST and answers JSON. The
outbox keeps what `send_email` "sent", so a demo can show what got out.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DEMO_TOOLS: list[dict[str, Any]] = [
    {
        "name": "get_weather",
        "path": "/weather",
        "risk": "read",
        "description": "Today's forecast for a city.",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 80}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
    {
        "name": "send_email",
        "path": "/send_email",
        "risk": "write",
        "description": "Send an email.",
        "input_schema": {
            "type": "object",
            "properties": {
                "to": {"type": "string", "format": "email", "maxLength": 254},
                "subject": {"type": "string", "maxLength": 200},
                "body": {"type": "string", "maxLength": 20000},
            },
            "required": ["to", "subject", "body"],
            "additionalProperties": False,
        },
    },
    {
        "name": "echo",
        "path": "/echo",
        "risk": "read",
        "description": "Returns its arguments.",
        "input_schema": {"type": "object"},
    },
]

_FORECASTS = ["sunny", "cloudy", "light rain", "windy", "snow"]


def create_tools_app() -> Starlette:
    """The demo tool server."""
    outbox: list[dict[str, Any]] = []

    async def weather(request: Request) -> JSONResponse:
        args = await request.json()
        city = str(args.get("city", ""))
        forecast = _FORECASTS[sum(city.encode()) % len(_FORECASTS)]
        return JSONResponse({"city": city, "forecast": forecast, "high_c": 12 + len(city) % 9})

    async def send_email(request: Request) -> JSONResponse:
        args = await request.json()
        outbox.append(args)
        return JSONResponse({"sent": True, "message_id": f"msg-{len(outbox)}"})

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"echo": await request.json()})

    async def show_outbox(_request: Request) -> JSONResponse:
        return JSONResponse(outbox)

    return Starlette(
        routes=[
            Route("/weather", weather, methods=["POST"]),
            Route("/send_email", send_email, methods=["POST"]),
            Route("/echo", echo, methods=["POST"]),
            Route("/outbox", show_outbox, methods=["GET"]),
        ]
    )


def demo_tool_declarations(port: int) -> list[dict[str, Any]]:
    """The `[[tools]]` entries that point at the demo tool server on `port`."""
    return [
        {
            "name": tool["name"],
            "url": f"http://127.0.0.1:{port}{tool['path']}",
            "risk": tool["risk"],
            "description": tool["description"],
            "input_schema": tool["input_schema"],
        }
        for tool in DEMO_TOOLS
    ]
