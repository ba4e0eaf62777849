"""A directory of `.cedar` files, parsed and validated into one policy set, or refused whole.

The directory (`[policy] dir`, `.ztgate/policies` by default, which `ztgate
init` fills with the default set) holds `*.cedar` files, in subdirectories
too (hidden names are skipped), and optionally `tags.toml`:

    [agents]
    "spiffe://acme.example/agent/mailer" = ["mail", "prod"]
    [tools]
    send_email = ["external"]

Every file is parsed, and every policy validated against the schema generated
from the registered tools (see `schema`). Any problem refuses the whole set,
each problem as `file:line: message`. A policy's id is its `@id("...")`
annotation, unique across files, else `file:line`.

When the directory does not exist, the built-in default set is used.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cedarpy

from ztgate.errors import PolicyLoadError
from ztgate.policy import text as policy_text
from ztgate.policy.entities import tools_entities
from ztgate.policy.model import PolicySnapshot, Rule, Tags
from ztgate.policy.references import NOTHING, context_needs, prune_type, wants
from ztgate.policy.schema import arguments_type, cedar_schema
from ztgate.tools.model import Tool

BUILTIN = "built-in defaults"
SUFFIX = ".cedar"
TAGS_FILE = "tags.toml"
_POSITIONAL = re.compile(r"^policy(\d+)$")
_POLICY_REF = re.compile(r"^for policy `[^`]*`,\s*")
_FOR_ACTION = re.compile(r' (?:in context )?for Action::"(?:[^"\\]|\\.)*"')
_UNKNOWN_ACTION = re.compile(r'unrecognized action `Action::"call:(.*)"`')


@dataclass(frozen=True, slots=True)
class Source:
    """One file's name (relative to the policy directory) and text."""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Sources:
    """What a policy directory holds, read at one moment."""

    origin: str  # the directory, or BUILTIN
    files: tuple[Source, ...]
    tags: Source | None = None

    @property
    def digest(self) -> str:
        """SHA-256 over every file's name and text."""
        digest = hashlib.sha256()
        for source in (*self.files, *([self.tags] if self.tags else [])):
            digest.update(source.name.encode() + b"\0" + source.text.encode() + b"\0")
        return digest.hexdigest()


def default_set() -> list[Source]:
    """The built-in default policies (what `ztgate init` copies into the policy directory)."""
    folder = resources.files("ztgate.policy").joinpath("default_set")
    return sorted(
        (
            Source(item.name, item.read_text(encoding="utf-8"))
            for item in folder.iterdir()
            if item.name.endswith(SUFFIX)
        ),
        key=lambda source: source.name,
    )


def install_defaults(directory: Path) -> bool:
    """Copy the default set into `directory` unless it exists; True if it was created."""
    if directory.exists():
        return False
    directory.mkdir(parents=True, mode=0o755)
    for source in default_set():
        (directory / source.name).write_text(source.text, encoding="utf-8")
    return True


def policy_files(directory: Path) -> list[Path]:
    """The `.cedar` files under `directory`, sorted, hidden names skipped."""
    return sorted(
        path
        for path in directory.rglob("*" + SUFFIX)
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )


def read(directory: Path | None) -> Sources:
    """Read the policy directory (the built-in set when there is none).

    Raises:
        PolicyLoadError: a file cannot be read or is not UTF-8.
    """
    if directory is None or not directory.is_dir():
        return Sources(BUILTIN, tuple(default_set()))
    files = [_read(directory, path) for path in policy_files(directory)]
    tags_path = directory / TAGS_FILE
    tags = _read(directory, tags_path) if tags_path.is_file() else None
    return Sources(str(directory), tuple(files), tags)


def _read(directory: Path, path: Path) -> Source:
    name = path.relative_to(directory).as_posix()
    try:
        return Source(name, path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise PolicyLoadError([f"{name}:1: not UTF-8 text ({exc.reason})"]) from exc
    except OSError as exc:
        raise PolicyLoadError([f"{name}:1: cannot be read: {exc.strerror}"]) from exc


def load(sources: Sources, tools: Sequence[Tool]) -> PolicySnapshot:
    """Parse and validate every policy against the schema for `tools`.

    Raises:
        PolicyLoadError: any file has any problem; each is named `file:line: message`.
    """
    problems: list[str] = []
    warnings: list[str] = []
    tags = parse_tags(sources.tags, problems)
    schema = cedarpy.Schema.from_json_str(json.dumps(cedar_schema(tools)))
    rules: dict[str, Rule] = {}
    policies: dict[str, Any] = {}
    for source in sources.files:
        _FileLoader(source, schema, problems).load(rules, policies)
    if problems:
        raise PolicyLoadError(problems)
    policy_set = cedarpy.PolicySet.from_json_str(
        json.dumps({"staticPolicies": policies, "templates": {}, "templateLinks": []})
    )
    if not rules:
        warnings.append("no policies: every call is denied")
    needs = context_needs(policies.values())
    read_arguments = wants(needs, "arguments") or NOTHING
    return PolicySnapshot(
        policies=policy_set,
        schema=schema,
        rules=MappingProxyType(rules),
        arguments=MappingProxyType(
            {
                tool.name: prune_type(arguments_type(tool.input_schema), read_arguments)
                for tool in tools
            }
        ),
        needs=needs,
        entities=tools_entities(tools, tags, schema),
        tags=tags,
        digest=sources.digest,
        source=sources.origin,
        files=tuple(source.name for source in sources.files),
        warnings=tuple(warnings),
    )


class _FileLoader:
    """One file's policies: parsed, validated, given ids, annotations checked."""

    def __init__(
        self,
        source: Source,
        schema: cedarpy.Schema,
        problems: list[str],
    ) -> None:
        self.source = source
        self.schema = schema
        self.problems = problems
        self.chunks = [c for c in policy_text.split(source.text) if c.complete]

    def problem(self, line: int, message: str) -> None:
        self.problems.append(f"{self.source.name}:{line}: {message}")

    def load(self, rules: dict[str, Rule], policies: dict[str, Any]) -> None:
        try:
            parsed = json.loads(cedarpy.policies_to_json_str(self.source.text))
        except ValueError:
            self._syntax_error()
            return
        if parsed.get("templates"):
            for pid in parsed["templates"]:
                self.problem(self._chunk(pid).line, "templates (?principal) are not supported")
            return
        static: Mapping[str, Any] = parsed.get("staticPolicies", {})
        if not self._valid(static):
            return
        for pid, body in static.items():
            self._add(self._chunk(pid), body, rules, policies)

    def _syntax_error(self) -> None:
        chunks = policy_text.split(self.source.text)
        failed = policy_text.first_failure(chunks, cedarpy.PolicySet.from_str)
        if failed is None:  # each policy parses alone: the file as a whole does not
            self.problem(1, "the file cannot be parsed")
            return
        chunk, message = failed
        self.problem(policy_text.parse_error(chunk, message), message)

    def _chunk(self, pid: str) -> policy_text.Chunk:
        match = _POSITIONAL.match(pid)
        index = int(match.group(1)) if match else -1
        if 0 <= index < len(self.chunks):
            return self.chunks[index]
        return policy_text.Chunk(1, "")

    def _valid(self, static: Mapping[str, Any]) -> bool:
        result = cedarpy.validate_policies(self.source.text, self.schema, release_gil=True)
        by_policy: dict[str, list[str]] = {}
        for error in result.errors:
            # The validator checks each policy once per tool it may apply to:
            # the same error for several tools is one problem.
            message = _FOR_ACTION.sub("", error.error)
            listed = by_policy.setdefault(error.policy_id, [])
            if message not in listed:
                listed.append(message)
        for pid, messages in by_policy.items():
            chunk = self._chunk(pid)
            for message in messages:
                text = _explain(_POLICY_REF.sub("", message))
                self.problem(policy_text.mentioned_line(chunk, message), text)
        return not by_policy

    def _add(
        self,
        chunk: policy_text.Chunk,
        body: Mapping[str, Any],
        rules: dict[str, Rule],
        policies: dict[str, Any],
    ) -> None:
        annotations: Mapping[str, Any] = body.get("annotations") or {}
        where = f"{self.source.name}:{chunk.line}"
        pid = annotations.get("id") or where
        effect = str(body.get("effect"))
        ask = (annotations["ask"] or "") if "ask" in annotations else None
        if ask is not None and effect != "permit":
            self.problem(chunk.line, "@ask applies to permit policies only (a forbid denies)")
            return
        if pid in rules:
            self.problem(chunk.line, f"policy id {pid!r} is already used at {rules[pid].where}")
            return
        rules[pid] = Rule(
            id=pid,
            file=self.source.name,
            line=chunk.line,
            effect=effect,
            text=chunk.text,
            ask=ask,
            reason=annotations.get("reason") or None,
        )
        policies[pid] = body


def _explain(message: str) -> str:
    unknown = _UNKNOWN_ACTION.search(message)
    if unknown:
        return f"{message} (no tool {unknown.group(1)!r} is registered)"
    return message


def parse_tags(source: Source | None, problems: list[str]) -> Tags:
    """The agents' and tools' tags from `tags.toml` (none when there is no such file)."""
    if source is None:
        return Tags()
    try:
        data = tomllib.loads(source.text)
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{source.name}: {exc}")
        return Tags()
    unknown = sorted(set(data) - {"agents", "tools"})
    if unknown:
        problems.append(f"{source.name}: unknown section {unknown[0]!r} (use [agents] and [tools])")
    found: dict[str, dict[str, tuple[str, ...]]] = {"agents": {}, "tools": {}}
    for section, mapping in found.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            problems.append(f"{source.name}: [{section}] must be a table")
            continue
        for name, tags in table.items():
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                problems.append(f"{source.name}: {section}.{name} must be a list of strings")
                continue
            mapping[name] = tuple(tags)
    return Tags(MappingProxyType(found["agents"]), MappingProxyType(found["tools"]))
