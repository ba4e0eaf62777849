"""Prometheus metrics: decisions counted by phase, outcome and deciding check."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ztgate.metrics import CONTENT_TYPE, Metrics
from ztgate.models import Decision, Outcome, Phase, Verdict
from ztgate.testing import make_call

ALLOW, ASK, DENY = Outcome.ALLOW, Outcome.ASK, Outcome.DENY


def decision(*verdicts: tuple[str, Outcome], phase: Phase = Phase.CALL) -> Decision:
    return Decision(make_call(), tuple(Verdict(c, o, f"{c} says") for c, o in verdicts), phase)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the rendered exposition, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def decisions(metrics: Metrics) -> dict[tuple[str, str, str], float]:
    return {
        (labels["phase"], labels["outcome"], labels["check"]): value
        for (name, label_items), value in samples(metrics).items()
        if name == "ztgate_decisions_total"
        for labels in [dict(label_items)]
    }


def test_an_allow_counts_under_all() -> None:
    metrics = Metrics()
    metrics.observe(decision(("schema", ALLOW), ("policy", ALLOW)))
    assert decisions(metrics) == {("call", "allow", "all"): 1.0}


def test_a_deny_counts_under_the_deciding_check() -> None:
    metrics = Metrics()
    metrics.observe(decision(("schema", ALLOW), ("policy", DENY)))
    metrics.observe(decision(("schema", DENY)))
    metrics.observe(decision(("schema", DENY)))
    assert decisions(metrics) == {
        ("call", "deny", "policy"): 1.0,
        ("call", "deny", "schema"): 2.0,
    }


def test_an_ask_counts_under_the_asking_check_and_a_later_deny_wins() -> None:
    metrics = Metrics()
    metrics.observe(decision(("schema", ALLOW), ("approval", ASK)))
    metrics.observe(decision(("approval", ASK), ("policy", DENY)))
    assert decisions(metrics) == {
        ("call", "ask", "approval"): 1.0,
        ("call", "deny", "policy"): 1.0,
    }


def test_a_decision_without_verdicts_is_a_deny_by_the_pipeline() -> None:
    """An empty chain denies (Pipeline with no checks); "all" is the allow label.

    The deciding check is the one `Decision.reasons()` names for the audit log.
    """
    empty = decision()
    metrics = Metrics()
    metrics.observe(empty)
    assert empty.reasons()[0]["check"] == "pipeline"
    assert decisions(metrics) == {("call", "deny", "pipeline"): 1.0}


def test_result_decisions_have_their_own_phase() -> None:
    metrics = Metrics()
    metrics.observe(decision(("result_schema", ALLOW), phase=Phase.RESULT))
    metrics.observe(decision(("result_schema", DENY), phase=Phase.RESULT))
    metrics.observe(decision(("schema", ALLOW)))
    assert decisions(metrics) == {
        ("result", "allow", "all"): 1.0,
        ("result", "deny", "result_schema"): 1.0,
        ("call", "allow", "all"): 1.0,
    }


def test_repeated_observations_accumulate() -> None:
    metrics = Metrics()
    for _ in range(7):
        metrics.observe(decision(("schema", ALLOW)))
    assert decisions(metrics) == {("call", "allow", "all"): 7.0}


def test_render_is_prometheus_text_with_every_documented_series() -> None:
    metrics = Metrics()
    metrics.observe(decision(("schema", ALLOW)))
    metrics.rejected.labels("body-too-large").inc()
    metrics.decision_seconds.observe(0.0003)
    metrics.call_seconds.labels("allow").observe(0.02)
    metrics.upstream_seconds.observe(0.01)
    metrics.upstream_errors.labels("upstream-timeout").inc()
    metrics.audit_failures.inc()
    metrics.federation_refreshes.labels("partner.example", "ok").inc()
    metrics.federation_last_refresh.labels("partner.example").set(1_800_000_000)
    metrics.federation_keys.labels("partner.example", "x509-svid").set(1)
    text = metrics.render().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert set(families) == {
        "ztgate_decisions",
        "ztgate_rejected_requests",
        "ztgate_decision_seconds",
        "ztgate_call_seconds",
        "ztgate_upstream_seconds",
        "ztgate_upstream_errors",
        "ztgate_audit_failures",
        "ztgate_federation_refreshes",
        "ztgate_federation_last_refresh_timestamp_seconds",
        "ztgate_federation_bundle_keys",
        "ztgate_loops_flagged",
        "ztgate_suspensions",
        "ztgate_alerts",
        "ztgate_mcp_task_instances",
    }
    assert families["ztgate_federation_bundle_keys"].type == "gauge"
    assert families["ztgate_decisions"].type == "counter"
    assert families["ztgate_call_seconds"].type == "histogram"
    found = samples(metrics)
    assert found[("ztgate_rejected_requests_total", (("reason", "body-too-large"),))] == 1.0
    assert found[("ztgate_upstream_errors_total", (("kind", "upstream-timeout"),))] == 1.0
    assert found[("ztgate_audit_failures_total", ())] == 1.0
    assert found[("ztgate_decision_seconds_count", ())] == 1.0
    assert found[("ztgate_decision_seconds_bucket", (("le", "0.0005"),))] == 1.0
    assert found[("ztgate_decision_seconds_bucket", (("le", "0.0001"),))] == 0.0
    assert found[("ztgate_call_seconds_count", (("outcome", "allow"),))] == 1.0
    assert "# HELP ztgate_decisions_total" in text
    assert "# TYPE ztgate_decisions_total counter" in text


def test_no_created_series_are_exposed() -> None:
    metrics = Metrics()
    metrics.observe(decision(("schema", DENY)))
    metrics.call_seconds.labels("deny").observe(0.01)
    metrics.audit_failures.inc()
    text = metrics.render().decode()
    assert "ztgate_decisions_total" in text
    assert "_created" not in text


def test_the_content_type_is_the_prometheus_text_format() -> None:
    assert CONTENT_TYPE.startswith("text/plain")
    assert "version=" in CONTENT_TYPE


def test_separate_instances_do_not_share_counts() -> None:
    first, second = Metrics(), Metrics()
    first.observe(decision(("schema", DENY)))
    first.audit_failures.inc()
    assert decisions(first) == {("call", "deny", "schema"): 1.0}
    assert decisions(second) == {}
    assert samples(second)[("ztgate_audit_failures_total", ())] == 0.0
    second.observe(decision(("schema", DENY)))
    assert decisions(first) == {("call", "deny", "schema"): 1.0}
    assert decisions(second) == {("call", "deny", "schema"): 1.0}


def test_the_process_wide_registry_is_untouched() -> None:
    from prometheus_client import REGISTRY

    Metrics()
    Metrics()  # a second instance would clash with the first in a shared registry
    assert REGISTRY.get_sample_value("ztgate_audit_failures_total") is None
