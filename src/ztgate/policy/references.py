"""Which parts of `context` the loaded policies read, so that only those are built.

Cedar parses the whole context of every request, and that is most of an
evaluation's cost; and a value no policy reads cannot change a decision. So
at load the policies' JSON form is walked for every `context.a.b…` access
(and `context.a has b`), and a call's context is built with exactly those
parts: the rest is never computed (no task lookup when no policy reads
`context.task`, no argument conversion for arguments no policy names).

`Needs` is a tree: `True` means "all of it", a mapping names the children
read. A bare `context` (compared as a whole, say) needs everything. Reading
more than a policy needs is harmless; reading less would be an evaluation
error, which denies (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from ztgate.policy.schema import Attribute, CedarType

Needs = Mapping[str, "Needs"] | bool
NOTHING: Needs = MappingProxyType({})


def context_needs(policies: Iterable[Mapping[str, Any]]) -> Needs:
    """What `context` paths the policies (in Cedar's JSON form) read."""
    paths: list[tuple[str, ...]] = []
    for policy in policies:
        for condition in policy.get("conditions", ()):
            _walk(condition.get("body"), paths)
    tree: dict[str, Any] = {}
    for path in paths:
        if not path:
            return True
        _add(tree, path)
    return _freeze(tree)


def _walk(expr: Any, paths: list[tuple[str, ...]]) -> None:
    stack = [expr]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, Mapping):
            continue
        path = _path(item)
        if path is not None:
            paths.append(path)
            continue
        has = item.get("has")
        if isinstance(has, Mapping):
            left = _path(has.get("left"))
            if left is not None:
                paths.append((*left, *_attrs(has.get("attr"))))
                continue
        stack.extend(item.values())


def _path(expr: Any) -> tuple[str, ...] | None:
    """The context path `expr` reads (`()` for `context` itself), or None."""
    if not isinstance(expr, Mapping):
        return None
    if expr.get("Var") == "context":
        return ()
    access = expr.get(".")
    if isinstance(access, Mapping) and isinstance(access.get("attr"), str):
        left = _path(access.get("left"))
        return None if left is None else (*left, access["attr"])
    return None


def _attrs(attr: Any) -> tuple[str, ...]:
    if isinstance(attr, str):
        return (attr,)
    if isinstance(attr, list) and all(isinstance(a, str) for a in attr):
        return tuple(attr)  # `has a.b.c` in newer Cedar versions
    return ()


def _add(tree: dict[str, Any], path: tuple[str, ...]) -> None:
    node = tree
    for index, name in enumerate(path):
        if index == len(path) - 1:
            node[name] = True
            return
        child = node.get(name)
        if child is True:
            return
        if child is None:
            child = node[name] = {}
        node = child


def _freeze(tree: Any) -> Needs:
    if tree is True:
        return True
    return MappingProxyType({name: _freeze(child) for name, child in tree.items()})


def wants(needs: Needs, name: str) -> Needs | None:
    """What of attribute `name` is read (None: nothing)."""
    if needs is True:
        return True
    if needs is False:
        return None
    return needs.get(name)


def prune(value: Any, needs: Needs) -> Any:
    """`value` (a record) with only the parts `needs` names."""
    if needs is True or not isinstance(value, Mapping):
        return value
    assert not isinstance(needs, bool)  # noqa: S101 - False is never stored in a tree
    return {name: prune(value[name], child) for name, child in needs.items() if name in value}


def prune_type(record: CedarType, needs: Needs) -> CedarType:
    """The part of a record type `needs` names (all of it for `True`)."""
    if needs is True or record.kind != "Record":
        return record
    assert not isinstance(needs, bool)  # noqa: S101 - False is never stored in a tree
    kept: dict[str, Attribute] = {}
    for name, child in needs.items():
        attribute = record.attributes.get(name)
        if attribute is not None:
            kept[name] = Attribute(prune_type(attribute.type, child), attribute.required)
    return CedarType("Record", attributes=MappingProxyType(kept))
