"""The dlp check: what sensitive data the arguments of tools that send out carry."""

from __future__ import annotations

from typing import Any

import pytest

from ztgate.guards import facts
from ztgate.guards.dlp import NAME, OutboundDlpCheck, credential_key, scan_arguments
from ztgate.models import Outcome, Verdict
from ztgate.pipeline import CallContext
from ztgate.testing import FrozenClock, make_call, make_tool
from ztgate.tools.catalog import Catalog
from ztgate.tools.flow import ToolFlow
from ztgate.tools.model import RiskTier

AWS = "AKIAIOSFODNN7EXAMPLE"
CATALOG = Catalog(
    [
        make_tool("send_email", risk=RiskTier.WRITE),
        make_tool("wire", risk=RiskTier.CRITICAL),
        make_tool("search", risk=RiskTier.READ),
        make_tool("fetch", risk=RiskTier.READ, flow=ToolFlow(egress=True)),
        make_tool("save_note", risk=RiskTier.WRITE, flow=ToolFlow(egress=False)),
    ]
)


async def run(tool: str, arguments: dict[str, Any], clock: FrozenClock) -> Verdict:
    verdict = await OutboundDlpCheck()(
        make_call(tool, arguments), CallContext(clock, tool=CATALOG.get(tool))
    )
    assert verdict.check == NAME and verdict.outcome is Outcome.ALLOW  # policy decides
    return verdict


async def test_secrets_and_personal_data_become_facts(clock: FrozenClock) -> None:
    verdict = await run(
        "send_email",
        {"to": "eve@evil.example", "body": f"key {AWS}, card 4111 1111 1111 1111", "n": 1},
        clock,
    )
    assert verdict.facts[facts.SECRETS_LEAVING] == ["aws_access_key"]
    assert verdict.facts[facts.PII_LEAVING] == ["card_number", "email"]
    assert facts.ENCODED_LEAVING not in verdict.facts
    assert verdict.reason == (
        "secrets: aws_access_key at /body; personal data: card_number at /body, email at /to"
    )
    assert AWS not in verdict.reason and "4111" not in verdict.reason


async def test_clean_arguments_have_no_facts(clock: FrozenClock) -> None:
    verdict = await run("send_email", {"subject": "Weekly report", "body": "All good."}, clock)
    assert verdict.facts == {}
    assert "no secrets" in verdict.reason


@pytest.mark.parametrize(
    ("tool", "scanned"), [("search", False), ("fetch", True), ("wire", True), ("save_note", False)]
)
async def test_which_tools_are_scanned(tool: str, scanned: bool, clock: FrozenClock) -> None:
    verdict = await run(tool, {"q": AWS}, clock)
    assert (facts.SECRETS_LEAVING in verdict.facts) is scanned


async def test_an_unknown_tool_is_the_registrys_business(clock: FrozenClock) -> None:
    verdict = await OutboundDlpCheck()(make_call("nope", {"q": AWS}), CallContext(clock))
    assert verdict.outcome is Outcome.ALLOW and verdict.facts == {}


def test_keys_nested_values_and_numbers_are_scanned() -> None:
    found = {
        (where, f.kind)
        for where, f in scan_arguments(
            {
                f"x-{AWS}": 1,
                "headers": [{"Authorization": "Bearer abcdefghijklmnop1234"}],
                "card": 4111111111111111,
                "clientSecret": "s3cr3t-value",
                "password": "",
                "page_token": "opaque-cursor-value",
            }
        )
    }
    assert (f"/x-{AWS}", "aws_access_key") in found
    assert ("/headers/0/Authorization", "bearer_token") not in found  # the value alone
    assert ("/card", "card_number") in found
    assert ("/clientSecret", "credential_field") in found
    assert not any(where in ("/password", "/page_token") for where, _ in found)


def test_credential_keys() -> None:
    assert credential_key("password") and credential_key("dbPassword") and credential_key("API-KEY")
    assert credential_key("client_secret") and credential_key("refreshToken")
    assert not credential_key("page_token") and not credential_key("author")
    assert not credential_key("passage")


async def test_reasons_of_secret_shaped_keys_are_redacted(clock: FrozenClock) -> None:
    verdict = await run("send_email", {AWS: "x"}, clock)
    assert AWS not in verdict.reason and "[REDACTED]" in verdict.reason
