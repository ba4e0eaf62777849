"""`ztgate policy`: validate, test and explain the policies; what the gateway has in force."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import cedarpy
import orjson
import typer
from rich.markup import escape
from rich.table import Table

from ztgate.audit import AuditEntry, AuditLog
from ztgate.cli.common import console, database, print_json, settings
from ztgate.clock import SystemClock
from ztgate.errors import InvalidInputError, PolicyLoadError
from ztgate.policy import cases as policy_cases
from ztgate.policy import engine, loader
from ztgate.policy.live import GENERATION as POLICY_GENERATION
from ztgate.policy.model import AgentFacts, CallFacts, Evaluation, GuardFacts, PolicySnapshot
from ztgate.policy.schema import cedar_schema
from ztgate.policy.status import STATUS_FILE, read_status
from ztgate.store import generations
from ztgate.tools.model import Tool
from ztgate.tools.registry import ToolRegistry

app = typer.Typer(
    help="Validate, test and explain the Cedar policies; show what the gateway has in force.",
    no_args_is_help=True,
)
DirOption = Annotated[
    Path | None, typer.Option("--dir", help="The policy directory (default: [policy] dir).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _directory(ctx: typer.Context, given: Path | None) -> Path:
    """`--dir`, which must exist, else `[policy] dir` (the built-in set while it does not)."""
    if given is not None and not given.is_dir():
        raise InvalidInputError(f"{given}: no such directory")
    current = settings(ctx)
    return given if given is not None else current.path(current.policy.dir)


def registered_tools(ctx: typer.Context) -> list[Tool]:
    """The registered tools, with those the config declares as the gateway will sync them."""
    db = database(ctx)
    try:
        tools = {tool.name: tool for tool in ToolRegistry(db, SystemClock()).all()}
    finally:
        db.dispose()
    tools.update({tool.name: tool for tool in settings(ctx).declared_tools()})
    return [tools[name] for name in sorted(tools)]


def _load(directory: Path, tools: Sequence[Tool]) -> PolicySnapshot:
    """The policies, or the problems on stderr and exit 1."""
    try:
        return loader.load(loader.read(directory), tools)
    except PolicyLoadError as exc:
        for problem in exc.problems:
            typer.echo(f"{directory}/{problem}" if directory.is_dir() else problem, err=True)
        raise typer.Exit(1) from exc


@app.command("validate")
def validate(ctx: typer.Context, directory: DirOption = None, as_json: JsonOption = False) -> None:
    """Parse the policies and validate them against the schema of the registered tools."""
    path = _directory(ctx, directory)
    tools = registered_tools(ctx)
    snapshot = _load(path, tools)
    if as_json:
        print_json(_summary(snapshot, len(tools)))
        return
    console.print(
        f"[green]✓[/] {len(snapshot.rules)} policies in {len(snapshot.files)} files "
        f"({escape(snapshot.source)}, version {snapshot.version}) are valid for "
        f"{len(tools)} tools"
    )
    for warning in snapshot.warnings:
        console.print(f"[yellow]![/] {escape(warning)}")


@app.command("reload")
def reload(ctx: typer.Context) -> None:
    """Validate the policies, then have every gateway on this store look at its files now.

    Each gateway reloads its own `[policy] dir` when the files changed (at
    once, whatever `reload_check_seconds` says); with PostgreSQL and Redis,
    every replica is told by broadcast. Invalid policies: nothing is asked.
    """
    current = settings(ctx)
    path = current.path(current.policy.dir)
    snapshot = _load(path, registered_tools(ctx))
    db = database(ctx)
    try:
        audit = AuditLog(db, SystemClock(), chain=current.audit.chain)
        entry = AuditEntry(
            kind="admin",
            outcome="allow",
            detail={"action": "policy.reload", "source": "cli", "digest": snapshot.digest},
        )
        with db.write() as conn:
            generations.bump(conn, POLICY_GENERATION)
            audit.append_within(conn, [entry])
    finally:
        db.dispose()
    console.print(
        f"[green]✓[/] {len(snapshot.rules)} policies in {escape(str(path))} are valid "
        f"(digest {snapshot.digest[:12]}); every gateway on this store looks at its files now"
    )


def _summary(snapshot: PolicySnapshot, tools: int) -> dict[str, Any]:
    return {
        "source": snapshot.source,
        "version": snapshot.version,
        "digest": snapshot.digest,
        "files": list(snapshot.files),
        "policies": [
            {"id": r.id, "where": r.where, "effect": r.effect, "ask": r.ask}
            for r in snapshot.rules.values()
        ],
        "tools": tools,
        "warnings": list(snapshot.warnings),
    }


def _cases(ctx: typer.Context, file: Path) -> policy_cases.CaseFile:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"{file}: cannot read: {exc.strerror}") from exc
    try:
        return policy_cases.parse(
            text, trust_domain=settings(ctx).identity.trust_domain, now=time.time()
        )
    except InvalidInputError as exc:
        raise InvalidInputError(f"{file}: {exc.message}") from exc


def _snapshot_for(
    ctx: typer.Context, directory: Path | None, parsed: policy_cases.CaseFile
) -> PolicySnapshot:
    tools = list(parsed.tools) if parsed.tools is not None else registered_tools(ctx)
    return _load(_directory(ctx, directory), tools)


@app.command("test")
def test(
    ctx: typer.Context,
    cases_file: Annotated[
        Path, typer.Argument(help="A YAML file of calls and expected decisions.")
    ],
    directory: DirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Decide every case in CASES_FILE and compare with what it expects (exit 1 on a failure)."""
    parsed = _cases(ctx, cases_file)
    snapshot = _snapshot_for(ctx, directory, parsed)
    results = policy_cases.run(snapshot, parsed.cases)
    failed = [result for result in results if not result.passed]
    if as_json:
        print_json(
            {
                "passed": len(results) - len(failed),
                "failed": len(failed),
                "results": [_result_json(result) for result in results],
            }
        )
    else:
        table = Table("", "case", "expected", "got", "reason")
        for result in results:
            mark = "[green]✓[/]" if result.passed else "[red]✗[/]"
            note = result.evaluation.reason
            if result.problem:
                note = f"{result.problem}: {note}"
            table.add_row(
                mark,
                escape(result.case.name),
                result.case.expect.value,
                result.evaluation.outcome.value,
                escape(note),
            )
        console.print(table)
        console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


def _result_json(result: policy_cases.Result) -> dict[str, Any]:
    return {
        "case": result.case.name,
        "passed": result.passed,
        "expected": result.case.expect.value,
        "outcome": result.evaluation.outcome.value,
        "reason": result.evaluation.reason,
        "decided_by": [rule.id for rule in result.evaluation.deciding],
        "problem": result.problem,
    }


@app.command("explain")
def explain(
    ctx: typer.Context,
    cases_file: Annotated[
        Path | None, typer.Argument(help="A case file (see `policy test`); else describe the call.")
    ] = None,
    case: Annotated[str | None, typer.Option(help="Only the case of this name.")] = None,
    tool: Annotated[str | None, typer.Option(help="The tool called.")] = None,
    arguments: Annotated[str, typer.Option(help="The arguments, as JSON.")] = "{}",
    agent: Annotated[
        str | None, typer.Option(help="The calling agent's SPIFFE ID (none: unauthenticated).")
    ] = None,
    in_scope: Annotated[bool, typer.Option(help="The call is within its task's scope.")] = True,
    tainted: Annotated[
        list[str] | None, typer.Option(help="A tainted argument (JSON Pointer); repeatable.")
    ] = None,
    secret: Annotated[
        list[str] | None, typer.Option(help="A kind of secret leaving; repeatable.")
    ] = None,
    directory: DirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Which policies decide a call, and why (their text)."""
    if cases_file is not None:
        parsed = _cases(ctx, cases_file)
        chosen = [c for c in parsed.cases if case is None or c.name == case]
        if not chosen:
            raise InvalidInputError(f"{cases_file}: no case named {case!r}")
        facts = [c.facts for c in chosen]
    elif tool is not None:
        parsed = policy_cases.CaseFile(())
        facts = [_described(ctx, tool, arguments, agent, in_scope, tainted, secret)]
    else:
        raise InvalidInputError("give a case file, or --tool (and --arguments, --agent …)")
    snapshot = _snapshot_for(ctx, directory, parsed)
    explained = [(f, engine.decide(snapshot, f)) for f in facts]
    if as_json:
        print_json([_explanation_json(f, e) for f, e in explained])
        return
    for call_facts, evaluation in explained:
        _print_explanation(call_facts, evaluation)


def _described(
    ctx: typer.Context,
    tool: str,
    arguments: str,
    agent: str | None,
    in_scope: bool,
    tainted: list[str] | None,
    secret: list[str] | None,
) -> CallFacts:
    try:
        values = orjson.loads(arguments)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"--arguments is not valid JSON: {exc}") from exc
    if not isinstance(values, dict):
        raise InvalidInputError("--arguments must be a JSON object")
    facts = None
    if agent is not None:
        domain = agent.removeprefix("spiffe://").split("/", 1)[0]
        facts = AgentFacts(agent, domain, domain == settings(ctx).identity.trust_domain)
    return CallFacts(
        tool=tool,
        arguments=values,
        now=time.time(),
        agent=facts,
        in_scope=in_scope,
        guards=GuardFacts(tainted_arguments=tuple(tainted or ()), secrets=tuple(secret or ())),
    )


def _explanation_json(facts: CallFacts, evaluation: Evaluation) -> dict[str, Any]:
    return {
        "tool": facts.tool,
        "outcome": evaluation.outcome.value,
        "reason": evaluation.reason,
        "deciding": [{"id": r.id, "where": r.where, "text": r.text} for r in evaluation.deciding],
        "satisfied": [r.id for r in evaluation.satisfied],
        "errors": list(evaluation.errors),
    }


def _print_explanation(facts: CallFacts, evaluation: Evaluation) -> None:
    colour = {"allow": "green", "ask": "yellow", "deny": "red"}[evaluation.outcome.value]
    who = facts.agent.spiffe_id if facts.agent else "an unauthenticated caller"
    console.print(
        f"[bold]{escape(facts.tool)}[/] by {escape(who)}: "
        f"[{colour}]{evaluation.outcome.value}[/] — {escape(evaluation.reason)}"
    )
    for rule in evaluation.deciding:
        console.print(f"  [bold]{escape(rule.label)}[/] decided:")
        for line in rule.text.splitlines():
            console.print(f"    {escape(line)}")
    others = [r for r in evaluation.satisfied if r not in evaluation.deciding]
    if others:
        console.print("  also satisfied: " + ", ".join(escape(r.label) for r in others))
    for error in evaluation.errors:
        console.print(f"  [red]error:[/] {escape(error)}")
    if not evaluation.deciding and not evaluation.errors:
        console.print("  no permit's conditions held for this call, so it is denied by default")


@app.command("status")
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """What the gateway has in force, its last reload, and whether the files on disk match."""
    current = settings(ctx)
    report = read_status(current.path(current.data_dir) / STATUS_FILE)
    directory = current.path(current.policy.dir)
    try:
        on_disk: str | None = loader.read(directory).digest
    except PolicyLoadError:
        on_disk = None
    if report is None:
        if as_json:
            print_json({"in_force": None, "last_attempt": None, "on_disk": on_disk})
        else:
            console.print("no gateway has loaded policies here yet (`ztgate policy validate`)")
        return
    in_force = report.get("in_force") or {}
    last = report.get("last_attempt") or {}
    in_sync = bool(in_force) and in_force.get("digest") == on_disk
    if as_json:
        print_json({**report, "on_disk": on_disk, "in_sync": in_sync})
    else:
        _print_status(in_force, last, in_sync)
    if not last.get("ok", False):
        raise typer.Exit(1)


def _print_status(in_force: dict[str, Any], last: dict[str, Any], in_sync: bool) -> None:
    if in_force:
        console.print(
            f"in force: {in_force.get('policies')} policies from "
            f"{escape(str(in_force.get('source')))}, version {in_force.get('version')}, "
            f"loaded {_when(in_force.get('loaded_at'))}"
        )
    else:
        console.print("[red]no policy set is in force[/]")
    if last.get("ok"):
        console.print(f"last reload {_when(last.get('at'))}: [green]loaded[/]")
    else:
        console.print(f"last reload {_when(last.get('at'))}: [red]rejected[/]")
        for problem in last.get("problems", []):
            console.print(f"  {escape(str(problem))}")
    if not in_sync:
        console.print("[yellow]the files on disk are not the set in force[/]")


def _when(stamp: Any) -> str:
    if not isinstance(stamp, int | float):
        return "?"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command("schema")
def schema(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The Cedar schema policies are validated against (from the registered tools)."""
    document = cedar_schema(registered_tools(ctx))
    if as_json:
        print_json(document)
        return
    text = str(cedarpy.Schema.from_json_str(json.dumps(document)))
    # Cedar prints built-in types qualified; no ztgate type shadows them.
    console.print(escape(text.replace("__cedar::", "")), soft_wrap=True)
