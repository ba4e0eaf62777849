"""Loading a policy directory: the whole set or nothing, every problem as file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ztgate.errors import PolicyLoadError
from ztgate.policy import loader
from ztgate.policy.loader import BUILTIN, Sources, default_set, install_defaults, read

from .conftest import Load, tools

GOOD = """@id("reads")
permit (principal, action in Action::"call", resource)
when { resource.risk == "read" };
"""


def problems(load: Load, text: str, **kwargs: object) -> list[str]:
    with pytest.raises(PolicyLoadError) as caught:
        load(text, **kwargs)
    return caught.value.problems


def test_a_valid_file_loads_with_ids_from_annotations_or_locations(load: Load) -> None:
    snapshot = load(
        GOOD + "\nforbid (principal, action, resource) when { context.in_scope == false };\n"
    )
    assert list(snapshot.rules) == ["reads", "main.cedar:5"]
    reads = snapshot.rules["reads"]
    assert (reads.file, reads.line, reads.effect, reads.ask) == ("main.cedar", 1, "permit", None)
    assert snapshot.rules["main.cedar:5"].label == "main.cedar:5"
    assert reads.label == "reads (main.cedar:1)"
    assert snapshot.files == ("main.cedar",)
    assert len(snapshot.digest) == 64 and snapshot.version == snapshot.digest[:12]


def test_a_syntax_error_is_refused_with_file_and_line(load: Load) -> None:
    text = (
        GOOD
        + '\n@id("broken")\npermit (principal, action, resource)\nwhen { context.in_scope && };\n'
    )
    assert problems(load, text) == ["main.cedar:7: unexpected token `}`"]


def test_a_missing_semicolon_is_refused(load: Load) -> None:
    assert problems(load, GOOD + "\npermit (principal, action, resource)\n") == [
        "main.cedar:5: the policy does not end with ';'"
    ]


def test_a_schema_violation_is_refused_with_file_and_line(load: Load) -> None:
    text = GOOD + "\npermit (principal, action, resource)\nwhen {\n  resource.risk > 1\n};\n"
    (problem,) = problems(load, text)
    assert problem.startswith("main.cedar:5: ")
    assert "expected Long but saw String" in problem


def test_an_unknown_attribute_is_refused_on_the_line_naming_it(load: Load) -> None:
    text = GOOD + "\npermit (principal, action, resource)\nwhen {\n  principal.clearance == 3\n};\n"
    assert problems(load, text) == [
        "main.cedar:7: attribute `clearance` on entity type `Agent` not found"
    ]


def test_an_untyped_argument_cannot_be_named(load: Load) -> None:
    pay = 'permit (principal, action == Action::"call:pay", resource)\n'
    text = pay + "when { context.arguments has memo };\n"
    text += pay + 'when { context.arguments.memo == "x" };\n'
    (problem,) = problems(load, text)
    assert problem.startswith("main.cedar:4:") and "memo" in problem


def test_typed_arguments_are_checked_per_tool(load: Load) -> None:
    good = (
        'forbid (principal, action == Action::"call:pay", resource)\n'
        "when { context.arguments.amount > 100 || (context.arguments has fee &&\n"
        '  context.arguments.fee.greaterThan(decimal("2.5"))) };\n'
    )
    assert list(load(good).rules) == ["main.cedar:1"]
    bad = (
        'forbid (principal, action == Action::"call:pay", resource)\n'
        'when { context.arguments.amount > "1" };\n'
    )
    # No name to point at: the policy's first line.
    assert problems(load, bad) == ["main.cedar:1: unexpected type: expected Long but saw String"]


def test_an_optional_attribute_needs_has(load: Load) -> None:
    text = 'permit (principal, action, resource)\nwhen { context.task.intent like "*report*" };\n'
    (problem,) = problems(load, text)
    assert problem.startswith("main.cedar:2:") and "optional attribute" in problem


def test_a_policy_for_an_unregistered_tool_is_refused(load: Load) -> None:
    text = 'permit (principal, action == Action::"call:gone", resource);\n'
    assert any("no tool 'gone' is registered" in p for p in problems(load, text))


def test_with_no_tools_policies_are_still_type_checked(load: Load) -> None:
    snapshot = load(GOOD, with_tools=[])
    assert snapshot.rules and not snapshot.warnings
    assert problems(
        load, GOOD + "permit (principal, action, resource) when { principal.x };", with_tools=[]
    ) == ["main.cedar:4: attribute `x` on entity type `Agent` not found"]


def test_every_file_is_checked_and_every_problem_reported(load: Load) -> None:
    found = problems(
        load,
        GOOD,
        files={
            "b.cedar": "permit (principal, action, resource) when { (( };",
            "sub/c.cedar": "nope;",
        },
    )
    assert [p.split(":")[0] for p in found] == ["b.cedar", "sub/c.cedar"]


def test_duplicate_ids_are_refused(load: Load) -> None:
    found = problems(load, GOOD, files={"other.cedar": GOOD})
    assert found == ["other.cedar:1: policy id 'reads' is already used at main.cedar:1"]


def test_ask_on_a_forbid_is_refused(load: Load) -> None:
    text = '@ask("why")\nforbid (principal, action, resource);\n'
    assert problems(load, text) == [
        "main.cedar:1: @ask applies to permit policies only (a forbid denies)"
    ]


def test_ask_and_reason_annotations_are_kept(load: Load) -> None:
    snapshot = load(
        "@ask\npermit (principal, action, resource);\n"
        '@ask("look")\n@reason("r")\npermit (principal, action, resource);\n'
    )
    first, second = snapshot.rules.values()
    assert (first.ask, first.reason) == ("", None)
    assert (second.ask, second.reason) == ("look", "r")


def test_templates_are_refused(load: Load) -> None:
    text = "permit (principal == ?principal, action, resource);\n"
    assert problems(load, text) == ["main.cedar:1: templates (?principal) are not supported"]


def test_hidden_files_and_other_suffixes_are_ignored(policy_dir: Path, load: Load) -> None:
    (policy_dir / ".draft.cedar").write_text("broken", encoding="utf-8")
    (policy_dir / ".hidden").mkdir()
    (policy_dir / ".hidden" / "x.cedar").write_text("broken", encoding="utf-8")
    (policy_dir / "notes.txt").write_text("broken", encoding="utf-8")
    assert load(GOOD).files == ("main.cedar",)


def test_a_file_that_is_not_utf8_is_refused(policy_dir: Path) -> None:
    (policy_dir / "bad.cedar").write_bytes(b"permit (principal, action, resource); // \xff\n")
    with pytest.raises(PolicyLoadError, match=r"bad.cedar:1: not UTF-8"):
        read(policy_dir)


def test_an_empty_directory_denies_everything_with_a_warning(load: Load) -> None:
    snapshot = load()
    assert not snapshot.rules
    assert "every call is denied" in snapshot.warnings[-1]


def test_tags_come_from_tags_toml(load: Load) -> None:
    tags = '[agents]\n"spiffe://ztgate.local/agent/a" = ["prod"]\n[tools]\nsend = ["external"]\n'
    snapshot = load(GOOD, files={"tags.toml": tags})
    assert snapshot.tags.agents == {"spiffe://ztgate.local/agent/a": ("prod",)}
    assert snapshot.tags.tools == {"send": ("external",)}


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ("[agents\n", "tags.toml: "),
        ("[people]\n", "unknown section 'people'"),
        ("agents = 1\n", "[agents] must be a table"),
        ('[tools]\nsend = "external"\n', "tools.send must be a list of strings"),
    ],
)
def test_bad_tags_are_refused(load: Load, tags: str, message: str) -> None:
    assert any(message in p for p in problems(load, GOOD, files={"tags.toml": tags}))


def test_the_built_in_set_is_used_without_a_directory(tmp_path: Path) -> None:
    sources = read(tmp_path / "absent")
    assert sources.origin == BUILTIN
    assert [s.name for s in sources.files] == ["default.cedar"]
    snapshot = loader.load(sources, tools())
    assert set(snapshot.rules) == {
        "reads-in-scope",
        "writes-in-scope",
        "critical-asks",
        "tainted-arguments-ask",
        "tainted-after-injection-asks",
        "secrets-stay",
    }


def test_install_defaults_copies_the_set_once(tmp_path: Path) -> None:
    target = tmp_path / "p"
    assert install_defaults(target)
    assert [p.name for p in target.iterdir()] == ["default.cedar"]
    (target / "default.cedar").write_text("// mine\n", encoding="utf-8")
    assert not install_defaults(target)
    assert (target / "default.cedar").read_text(encoding="utf-8") == "// mine\n"
    assert read(target).digest != Sources(BUILTIN, tuple(default_set())).digest
