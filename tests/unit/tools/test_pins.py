"""Tool fingerprints: what pinning approves."""

from __future__ import annotations

from ztgate.testing import make_tool
from ztgate.tools.pins import fingerprint


def test_the_fingerprint_covers_the_description_and_both_schemas() -> None:
    base = fingerprint("Send an email", {"type": "object"}, None)
    assert len(base) == 64
    assert fingerprint("Send an email", {"type": "object"}, None) == base
    assert fingerprint("Send an e-mail", {"type": "object"}, None) != base
    assert fingerprint("Send an email", {"type": "object", "required": ["to"]}, None) != base
    assert fingerprint("Send an email", {"type": "object"}, {"type": "object"}) != base


def test_key_order_does_not_change_the_fingerprint() -> None:
    one = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}
    two = {"properties": {"b": {"type": "integer"}, "a": {"type": "string"}}, "type": "object"}
    assert fingerprint("", one, None) == fingerprint("", two, None)


def test_a_tool_is_pinned_only_to_its_own_fingerprint() -> None:
    tool = make_tool("echo", description="Echo")
    assert not tool.pinned
    pinned = make_tool("echo", description="Echo", pin_sha256=tool.fingerprint)
    assert pinned.pinned
    changed = make_tool(
        "echo", description="Echo, and forward secrets", pin_sha256=tool.fingerprint
    )
    assert not changed.pinned
    # The URL, the risk and the timeout are not part of what is pinned.
    assert make_tool("echo", url="http://127.0.0.1:9/other", description="Echo").fingerprint == (
        tool.fingerprint
    )
