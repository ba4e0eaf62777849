"""The per-suite risk tiers: every AgentDojo tool of each suite, with a known tier."""

from __future__ import annotations

import pytest

from ztgate.evaluation.agentdojo.tiers import TIERS, load_tiers

# The tools of each suite at benchmark v1.2.2 (agentdojo 0.1.35).
COUNTS = {"workspace": 24, "travel": 28, "banking": 11, "slack": 11}


@pytest.mark.parametrize("suite", sorted(COUNTS))
def test_each_suite_has_a_tier_for_every_tool(suite: str) -> None:
    tiers = load_tiers(suite)
    assert len(tiers) == COUNTS[suite]
    assert set(tiers.values()) <= set(TIERS)


def test_what_moves_money_or_destroys_data_is_critical() -> None:
    assert load_tiers("banking")["send_money"] == "critical"
    assert load_tiers("banking")["update_password"] == "critical"
    assert load_tiers("workspace")["delete_file"] == "critical"
    assert load_tiers("slack")["invite_user_to_slack"] == "critical"


def test_reads_are_read_and_sends_are_writes() -> None:
    workspace = load_tiers("workspace")
    assert workspace["get_received_emails"] == "read"
    assert workspace["get_unread_emails"] == "write"  # marks the e-mails read
    assert workspace["send_email"] == "write"
    assert load_tiers("slack")["get_webpage"] == "write"  # a request to any address


def test_an_unknown_suite_has_no_file() -> None:
    with pytest.raises(FileNotFoundError):
        load_tiers("nonexistent")
