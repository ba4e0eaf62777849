"""The `policy` check: facts from earlier checks in, a verdict out, failing closed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.errors import NotFoundError
from ztgate.guards import facts as guard_names
from ztgate.models import Outcome
from ztgate.pipeline import CallContext
from ztgate.policy import check as check_module
from ztgate.policy.check import NAME, FactError, PolicyCheck, guard_facts, tools_of
from ztgate.policy.live import LivePolicies
from ztgate.policy.model import GuardFacts
from ztgate.tasks.registry import Task
from ztgate.tasks.scope import parse_scope
from ztgate.testing import FrozenClock, make_call, make_settings
from ztgate.tools.catalog import Catalog

from .conftest import AGENT, tools

DEFAULTS = None  # the built-in default set
TASK = Task(
    id="t1",
    principal="bob",
    agent=AGENT.spiffe_id,
    intent="send the weekly report",
    scope=parse_scope({"tools": {"lookup": {}}}),
    budget_calls=None,
    budget_spend=None,
    state="active",
    created_at=1_800_000_000.0 - 90,
    expires_at=1_900_000_000.0,
)


def authenticated(**extra: Any) -> dict[str, Any]:
    return {
        "principal.spiffe_id": AGENT.spiffe_id,
        "principal.trust_domain": AGENT.trust_domain,
        "principal.local": True,
        "scope.within": True,
        **extra,
    }


def check_for(
    directory: Path, clock: FrozenClock, *, authentication: bool = True, **kwargs: Any
) -> PolicyCheck:
    check = PolicyCheck(LivePolicies(directory, clock), authentication=authentication, **kwargs)
    catalog = Catalog(tools())
    check.start(lambda: catalog)
    return check


def context(clock: FrozenClock, tool: str = "lookup", **found: Any) -> CallContext:
    ctx = CallContext(clock, tool=Catalog(tools()).get(tool))
    ctx.facts.update(found)
    return ctx


@pytest.fixture
def defaults(tmp_path: Path, clock: FrozenClock) -> PolicyCheck:
    return check_for(tmp_path / "absent", clock)


async def test_a_read_in_scope_is_allowed_with_the_policy_facts(
    defaults: PolicyCheck, clock: FrozenClock
) -> None:
    verdict = await defaults(make_call("lookup", {"q": "x"}), context(clock, **authenticated()))
    assert (verdict.check, verdict.outcome) == (NAME, Outcome.ALLOW)
    assert verdict.reason == "permitted by reads-in-scope (default.cedar:10)"
    assert verdict.facts["policy.decided_by"] == ["reads-in-scope"]
    snapshot = defaults.live.snapshot
    assert snapshot is not None and verdict.facts["policy.version"] == snapshot.version


@pytest.mark.parametrize(
    ("tool", "arguments", "found", "outcome", "reason"),
    [
        ("send", {"to": "a@b.example"}, {}, Outcome.ALLOW, "writes-in-scope"),
        ("pay", {"amount": 5}, {}, Outcome.ASK, "critical-asks"),
        ("lookup", {}, {"scope.within": False}, Outcome.DENY, "default deny"),
        (
            "send",
            {"to": "a@b.example"},
            {guard_names.TAINTED_ARGUMENTS: ["/to"]},
            Outcome.ASK,
            "tainted-arguments-ask",
        ),
        (
            "lookup",
            {},
            {guard_names.SECRETS_LEAVING: ["aws_access_key"]},
            Outcome.DENY,
            "secrets-stay",
        ),
        (
            "pay",
            {"amount": 5},
            {guard_names.SECRETS_LEAVING: ["iban"]},
            Outcome.DENY,
            "secrets-stay",
        ),
    ],
)
async def test_the_default_set(
    defaults: PolicyCheck,
    clock: FrozenClock,
    tool: str,
    arguments: dict[str, Any],
    found: dict[str, Any],
    outcome: Outcome,
    reason: str,
) -> None:
    verdict = await defaults(
        make_call(tool, arguments), context(clock, tool, **authenticated(**found))
    )
    assert verdict.outcome is outcome, verdict.reason
    assert reason in verdict.reason


async def test_authentication_off_is_anonymous_and_in_scope(
    tmp_path: Path, clock: FrozenClock
) -> None:
    check = check_for(tmp_path / "absent", clock, authentication=False)
    send = await check(make_call("send", {"to": "x"}), context(clock, "send"))
    assert send.outcome is Outcome.ALLOW
    pay = await check(make_call("pay", {"amount": 1}), context(clock, "pay"))
    assert pay.outcome is Outcome.ASK


async def test_an_unauthenticated_call_is_denied_when_authentication_is_on(
    defaults: PolicyCheck, clock: FrozenClock
) -> None:
    verdict = await defaults(make_call("lookup"), context(clock))
    assert (verdict.outcome, verdict.reason) == (
        Outcome.DENY,
        "the caller is not authenticated (fail closed)",
    )


async def test_no_policy_set_denies(tmp_path: Path, clock: FrozenClock) -> None:
    check = PolicyCheck(LivePolicies(tmp_path, clock))
    verdict = await check(make_call("lookup"), context(clock, **authenticated()))
    assert (verdict.outcome, verdict.reason) == (Outcome.DENY, "no policy set is loaded")


TASK_POLICY = """permit (principal, action, resource)
when { context has task && context.task.intent like "*report*" &&
       context.task.principal == "bob" && context.task.age_seconds >= 90 &&
       context.task.calls < 3 && principal.owner == "alice" };
"""


async def test_the_task_is_read_once_and_cached(policy_dir: Path, clock: FrozenClock) -> None:
    (policy_dir / "task.cedar").write_text(TASK_POLICY, encoding="utf-8")
    lookups: list[str] = []

    def tasks(task_id: str) -> Task:
        lookups.append(task_id)
        return TASK

    check = check_for(policy_dir, clock, tasks=tasks, owner=lambda spiffe_id: "alice")
    found = authenticated(**{"task.id": "t1", "task.calls": 2})
    for _ in range(3):
        verdict = await check(make_call("lookup"), context(clock, **found))
        assert verdict.outcome is Outcome.ALLOW, verdict.reason
    assert lookups == ["t1"]
    over = await check(make_call("lookup"), context(clock, **{**found, "task.calls": 3}))
    assert over.outcome is Outcome.DENY


async def test_a_task_that_cannot_be_read_denies(policy_dir: Path, clock: FrozenClock) -> None:
    (policy_dir / "task.cedar").write_text(TASK_POLICY, encoding="utf-8")

    def missing(task_id: str) -> Task:
        raise NotFoundError("task", task_id)

    check = check_for(policy_dir, clock, tasks=missing)
    verdict = await check(make_call("lookup"), context(clock, **authenticated(**{"task.id": "t9"})))
    assert verdict.outcome is Outcome.DENY
    assert verdict.reason == "task t9 cannot be read: task 't9' not found (fail closed)"
    without = check_for(policy_dir, clock)
    verdict = await without(
        make_call("lookup"), context(clock, **authenticated(**{"task.id": "t9"}))
    )
    assert verdict.reason == "tasks cannot be read here (fail closed)"


async def test_the_task_is_not_read_when_no_policy_reads_it(
    defaults: PolicyCheck, clock: FrozenClock
) -> None:
    def never(task_id: str) -> Task:
        raise AssertionError("read")

    defaults._tasks = never
    verdict = await defaults(
        make_call("lookup"), context(clock, **authenticated(**{"task.id": "t1"}))
    )
    assert verdict.outcome is Outcome.ALLOW


@pytest.mark.parametrize(
    ("found", "reason"),
    [
        (
            {guard_names.SECRETS_LEAVING: "aws"},
            "fact guards.secrets_leaving is not a list of strings",
        ),
        (
            {guard_names.TAINTED_ARGUMENTS: [1]},
            "fact guards.tainted_arguments is not a list of strings",
        ),
        ({guard_names.INJECTION_SEEN: "yes"}, "fact guards.injection_seen is not a bool"),
        ({guard_names.TAINT_SOURCES: ["x"]}, "fact guards.taint_sources is not a mapping"),
        (
            {guard_names.TAINT_SOURCES: {"/a": "web"}},
            "fact guards.taint_sources does not map to lists of tools",
        ),
        ({"principal.local": "yes"}, "fact principal.local is not a bool"),
    ],
)
async def test_a_malformed_fact_denies(
    defaults: PolicyCheck, clock: FrozenClock, found: dict[str, Any], reason: str
) -> None:
    verdict = await defaults(make_call("lookup"), context(clock, **authenticated(**found)))
    assert verdict.outcome is Outcome.DENY
    assert verdict.reason == f"{reason} (fail closed)"


def test_guard_facts_are_mapped() -> None:
    found = guard_facts(
        {
            guard_names.TAINTED_ARGUMENTS: ["/to"],
            guard_names.TAINT_SOURCES: {"/to": ["web_fetch", "inbox"]},
            guard_names.SECRETS_LEAVING: {"b", "a"},
            guard_names.PII_LEAVING: ("iban",),
            guard_names.ENCODED_LEAVING: ["base64_blob"],
            guard_names.INJECTION_SEEN: True,
            guard_names.DESTINATION_HOSTS: ["evil.example"],
        }
    )
    assert found.tainted and found.tainted_from == ("inbox", "web_fetch")
    assert found.secrets == ("a", "b") and found.pii == ("iban",)
    assert found.encoded == ("base64_blob",)
    assert found.injection and found.hosts == ("evil.example",)
    assert not guard_facts({}).tainted


async def test_an_argument_of_an_unexpected_type_denies_with_the_reason(
    policy_dir: Path, clock: FrozenClock
) -> None:
    (policy_dir / "limits.cedar").write_text(
        "permit (principal, action, resource);\n"
        'forbid (principal, action == Action::"call:pay", resource)\n'
        "when { context.arguments.amount > 1000 };\n",
        encoding="utf-8",
    )
    check = check_for(policy_dir, clock)
    ok = await check(make_call("pay", {"amount": 10}), context(clock, "pay", **authenticated()))
    assert ok.outcome is Outcome.ALLOW
    for value in ("1000000", 1e30, [1], None):
        verdict = await check(
            make_call("pay", {"amount": value}), context(clock, "pay", **authenticated())
        )
        assert verdict.outcome is Outcome.DENY, value
        assert verdict.reason.startswith("argument /amount "), verdict.reason
        assert verdict.reason.endswith("(fail closed)")


def test_from_settings_uses_the_policy_directory_and_status_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, '[policy]\ndir = "rules"\nreload_check_seconds = 1.5\n')
    check = PolicyCheck.from_settings(settings, FrozenClock())
    assert check.live.directory == tmp_path / "rules"
    assert check.live._interval == 1.5
    assert check.live._status_path == tmp_path / ".ztgate" / "policy-status.json"
    assert tools_of(object()) == ()
    assert [t.name for t in tools_of(Catalog(tools()))] == ["lookup", "pay", "send"]


async def test_calls_during_hot_reloads_are_always_decided_by_a_whole_set(
    policy_dir: Path, clock: FrozenClock
) -> None:
    allow = '@id("all")\npermit (principal, action, resource);\n'
    forbid = allow + '@id("none")\nforbid (principal, action, resource);\n'
    broken = "permit (principal, action, resource) when { (( };\n"
    (policy_dir / "main.cedar").write_text(allow, encoding="utf-8")
    check = check_for(policy_dir, clock)
    stop = threading.Event()

    def edit() -> None:
        # An editor that writes in place: truncate, then write (not atomic).
        texts = [forbid, broken, allow, broken, forbid]
        for index in range(40):
            (policy_dir / "main.cedar").write_text(texts[index % len(texts)], encoding="utf-8")
            stop.wait(0.002 if index % 3 else 0.08)
        stop.set()

    editor = threading.Thread(target=edit)
    editor.start()
    verdicts = []
    try:
        while not stop.is_set():
            batch = [
                check(make_call("lookup"), context(clock, **authenticated())) for _ in range(5)
            ]
            verdicts.extend(await asyncio.wait_for(asyncio.gather(*batch), 10))
    finally:
        editor.join()
    final = await check(make_call("lookup"), context(clock, **authenticated()))
    assert final.reason == "forbidden by none (main.cedar:3)"  # the last edit is in force
    assert len(verdicts) > 10
    reasons = {(v.outcome, v.reason) for v in verdicts}
    assert reasons <= {
        (Outcome.ALLOW, "permitted by all (main.cedar:1)"),
        (Outcome.DENY, "forbidden by none (main.cedar:3)"),
    }, reasons


SPEND_POLICY = """permit (principal, action, resource)
when { context has task && context.task.spend.lessThan(decimal("100.0")) &&
       context.cost.lessThanOrEqual(decimal("5.0")) };
"""


async def test_budget_facts_reach_the_policies(policy_dir: Path, clock: FrozenClock) -> None:
    (policy_dir / "spend.cedar").write_text(SPEND_POLICY, encoding="utf-8")
    check = check_for(policy_dir, clock, tasks=lambda task_id: TASK)
    found = authenticated(**{"task.id": "t1", "task.spend": 40.5, "call.cost": 5})
    verdict = await check(make_call("lookup"), context(clock, **found))
    assert verdict.outcome is Outcome.ALLOW, verdict.reason
    dearer = await check(make_call("lookup"), context(clock, **{**found, "call.cost": 5.5}))
    assert dearer.outcome is Outcome.DENY
    # 5.00001 is rounded up to 5.0001: an upper limit stays at least as strict.
    odd = await check(make_call("lookup"), context(clock, **{**found, "call.cost": 5.00001}))
    assert odd.outcome is Outcome.DENY
    noisy = {**found, "task.spend": 0.1 + 0.2, "call.cost": 5.0}
    assert (await check(make_call("lookup"), context(clock, **noisy))).outcome is Outcome.ALLOW
    huge = await check(make_call("lookup"), context(clock, **{**found, "call.cost": 1e20}))
    assert huge.reason == ("the call's cost is outside the range of a Cedar decimal (fail closed)")
    bad = await check(make_call("lookup"), context(clock, **{**found, "task.spend": "lots"}))
    assert bad.reason == "fact task.spend is not a number (fail closed)"


def _slow_strings(found: Any, name: str) -> tuple[str, ...]:
    """The facts' string lists as read before the fast path (held to it below)."""
    value = found.get(name, ())
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise FactError(f"fact {name} is not a list of strings")
    if not all(isinstance(item, str) for item in value):
        raise FactError(f"fact {name} is not a list of strings")
    return tuple(sorted(value)) if isinstance(value, set | frozenset) else tuple(value)


def _slow_guard_facts(found: Any) -> GuardFacts:
    if not any(name in found for name in check_module._GUARD_FACTS):
        return check_module.NO_FINDINGS
    sources = found.get(guard_names.TAINT_SOURCES, {})
    if not isinstance(sources, Mapping):
        raise FactError(f"fact {guard_names.TAINT_SOURCES} is not a mapping")
    tainted_from: set[str] = set()
    for listed in sources.values():
        if isinstance(listed, str) or not isinstance(listed, list | tuple):
            raise FactError(f"fact {guard_names.TAINT_SOURCES} does not map to lists of tools")
        tainted_from.update(str(tool) for tool in listed)
    return GuardFacts(
        tainted_arguments=_slow_strings(found, guard_names.TAINTED_ARGUMENTS),
        tainted_from=tuple(sorted(tainted_from)),
        secrets=_slow_strings(found, guard_names.SECRETS_LEAVING),
        pii=_slow_strings(found, guard_names.PII_LEAVING),
        encoded=_slow_strings(found, guard_names.ENCODED_LEAVING),
        injection=check_module._typed(found, guard_names.INJECTION_SEEN, bool, False),
        hosts=_slow_strings(found, guard_names.DESTINATION_HOSTS),
    )


_FACT_VALUES = st.one_of(
    st.lists(st.sampled_from(["aws", "b", "", "z"]), max_size=3),
    st.lists(st.sampled_from(["aws", "b"]), max_size=3).map(tuple),
    st.frozensets(st.sampled_from(["aws", "b", "c"]), max_size=3),
    st.sets(st.sampled_from(["aws", "b", "c"]), max_size=3),
    st.lists(st.one_of(st.text(max_size=2), st.integers(), st.none()), max_size=3),
    st.sampled_from(["", "text", 0, 1, None, True, False, {}, {"a": ["t"]}, b"", ()]),
    st.dictionaries(
        st.sampled_from(["/a", "/b"]),
        st.one_of(st.lists(st.sampled_from(["read_web", "x"]), max_size=2), st.just("tool")),
        max_size=2,
    ),
)


def _outcome(read: Any, found: Any) -> Any:
    try:
        return read(found)
    except FactError as exc:
        return ("FactError", str(exc))


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*check_module._GUARD_FACTS, "warrant.delegated_by", "other"]),
        _FACT_VALUES,
        max_size=5,
    )
)
def test_guard_facts_and_string_lists_read_as_before(found: dict[str, Any]) -> None:
    assert _outcome(guard_facts, found) == _outcome(_slow_guard_facts, found)
    for name in (*check_module._GUARD_FACTS, "warrant.delegated_by"):
        fast = _outcome(lambda f, name=name: check_module._strings(f, name), found)
        assert fast == _outcome(lambda f, name=name: _slow_strings(f, name), found)
