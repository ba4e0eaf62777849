"""The demo tool server and the declarations that point the gateway at it."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ztgate.cli.toml import array_of_tables
from ztgate.config import ToolSettings, load_settings
from ztgate.demo.tools import DEMO_TOOLS, create_tools_app, demo_tool_declarations
from ztgate.tools.catalog import Catalog
from ztgate.tools.model import RiskTier, Tool

FORECASTS = ["sunny", "cloudy", "light rain", "windy", "snow"]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_tools_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://tools") as http:
        yield http


@pytest.mark.parametrize("city", ["Lisbon", "Reykjavík", "x"])
async def test_weather_is_a_deterministic_forecast(client: httpx.AsyncClient, city: str) -> None:
    response = await client.post("/weather", json={"city": city})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == {
        "city": city,
        "forecast": FORECASTS[sum(city.encode()) % len(FORECASTS)],
        "high_c": 12 + len(city) % 9,
    }
    assert (await client.post("/weather", json={"city": city})).json() == body


async def test_weather_without_a_city_still_answers(client: httpx.AsyncClient) -> None:
    body = (await client.post("/weather", json={})).json()
    assert body["city"] == "" and body["forecast"] in FORECASTS


async def test_sent_emails_land_in_the_outbox_in_order(client: httpx.AsyncClient) -> None:
    assert (await client.get("/outbox")).json() == []
    first = {"to": "alice@example.com", "subject": "Hi", "body": "One"}
    second = {"to": "bob@example.com", "subject": "Re", "body": "Two"}
    assert (await client.post("/send_email", json=first)).json() == {
        "sent": True,
        "message_id": "msg-1",
    }
    assert (await client.post("/send_email", json=second)).json()["message_id"] == "msg-2"
    assert (await client.get("/outbox")).json() == [first, second]


async def test_each_app_has_its_own_outbox(client: httpx.AsyncClient) -> None:
    await client.post("/send_email", json={"to": "a@b.c", "subject": "s", "body": "b"})
    transport = httpx.ASGITransport(app=create_tools_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://tools") as other:
        assert (await other.get("/outbox")).json() == []
    assert len((await client.get("/outbox")).json()) == 1


async def test_echo_returns_its_arguments(client: httpx.AsyncClient) -> None:
    arguments = {"a": [1, {"b": None}], "c": "ü"}
    assert (await client.post("/echo", json=arguments)).json() == {"echo": arguments}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/weather", 405),
        ("GET", "/send_email", 405),
        ("GET", "/echo", 405),
        ("POST", "/outbox", 405),
        ("POST", "/delete_all_files", 404),
    ],
)
async def test_only_the_declared_routes_answer(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    assert (await client.request(method, path, json={})).status_code == status


# -- declarations ----------------------------------------------------------------


def test_the_declarations_are_valid_tools_on_the_given_port() -> None:
    tools = [ToolSettings(**d).to_tool() for d in demo_tool_declarations(9999)]
    assert [t.name for t in tools] == [t["name"] for t in DEMO_TOOLS]
    for tool, spec in zip(tools, DEMO_TOOLS, strict=True):
        assert isinstance(tool, Tool)
        assert tool.upstream_url == f"http://127.0.0.1:9999{spec['path']}"
        assert tool.risk is RiskTier(spec["risk"])
        assert tool.description == spec["description"]
        assert tool.source == "config"
    assert {t.name: t.risk for t in tools} == {
        "get_weather": RiskTier.READ,
        "send_email": RiskTier.WRITE,
        "read_inbox": RiskTier.READ,
        "pay_invoice": RiskTier.CRITICAL,
        "echo": RiskTier.READ,
    }
    flows = {t.name: t.flow for t in tools if t.flow is not None}
    assert list(flows) == ["read_inbox"]  # its senders and ids are a system of record


async def test_every_declared_tool_is_served_by_the_app(client: httpx.AsyncClient) -> None:
    arguments = {
        "get_weather": {"city": "Paris"},
        "send_email": {"to": "a@example.com", "subject": "s", "body": "b"},
        "read_inbox": {"limit": 2},
        "pay_invoice": {"invoice": "INV-1042", "iban": "DE89370400440532013000", "amount_eur": 1},
        "echo": {"k": 1},
    }
    for declaration in demo_tool_declarations(80):
        path = declaration["url"].removeprefix("http://127.0.0.1:80")
        response = await client.post(path, json=arguments[declaration["name"]])
        assert response.status_code == 200, declaration["name"]


def test_the_schemas_admit_the_demo_calls_and_refuse_the_bad_ones() -> None:
    catalog = Catalog(ToolSettings(**d).to_tool() for d in demo_tool_declarations(8471))

    def valid(tool: str, arguments: dict[str, object]) -> bool:
        entry = catalog.get(tool)
        assert entry is not None
        return entry.arguments.is_valid(arguments)

    assert valid("get_weather", {"city": "Lisbon"})
    assert not valid("get_weather", {"city": "Lisbon", "shell": "rm -rf /"})
    assert not valid("get_weather", {"city": ""})
    assert not valid("get_weather", {})
    mail = {"to": "alice@example.com", "subject": "Forecast", "body": "Sunny."}
    assert valid("send_email", mail)
    assert not valid("send_email", {**mail, "to": "not an address"})
    assert not valid("send_email", {**mail, "subject": "x" * 201})
    assert not valid("send_email", {"to": "alice@example.com"})
    assert valid("send_email", {**mail, "attachments": ["report.pdf"]})
    assert valid("read_inbox", {}) and not valid("read_inbox", {"limit": 0})
    payment = {"invoice": "INV-1042", "iban": "DE89370400440532013000", "amount_eur": 1200}
    assert valid("pay_invoice", payment)
    assert not valid("pay_invoice", {**payment, "invoice": "1042"})
    assert not valid("pay_invoice", {**payment, "amount_eur": -5})
    assert valid("echo", {"anything": ["goes"]})


async def test_the_inbox_holds_a_planted_instruction(client: httpx.AsyncClient) -> None:
    messages = (await client.post("/read_inbox", json={})).json()["messages"]
    assert [m["id"] for m in messages] == ["m-1001", "m-1002", "m-1003"]
    assert "ignore all previous instructions" in messages[1]["body"]
    assert len((await client.post("/read_inbox", json={"limit": 1})).json()["messages"]) == 1


async def test_payments_are_kept_like_the_outbox(client: httpx.AsyncClient) -> None:
    payment = {"invoice": "INV-1042", "iban": "DE89370400440532013000", "amount_eur": 1200}
    assert (await client.post("/pay_invoice", json=payment)).json() == {
        "paid": True,
        "payment_id": "pay-1",
    }


def test_the_declarations_survive_the_config_file(tmp_path: Path) -> None:
    """As `ztgate init --demo` writes them, and the gateway reads them back."""
    text = array_of_tables("tools", demo_tool_declarations(8471))
    assert tomllib.loads(text)["tools"] == demo_tool_declarations(8471)
    config = tmp_path / "ztgate.toml"
    config.write_text(text)
    declared = load_settings(config).declared_tools()
    assert [t.name for t in declared] == [
        "get_weather",
        "send_email",
        "read_inbox",
        "pay_invoice",
        "echo",
    ]
    assert declared[1].input_schema == DEMO_TOOLS[1]["input_schema"]
    assert declared[2].flow is not None
    assert declared[2].flow.record_fields == ("/messages/*/from", "/messages/*/id")
