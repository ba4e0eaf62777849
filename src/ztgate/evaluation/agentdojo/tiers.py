"""The per-suite risk tiers: the only benchmark-specific input the gateway gets.

`tiers/<suite>.yaml` maps each AgentDojo tool to `read`, `write` or
`critical`, written from the tools' docstrings (see the comments there).
"""

from __future__ import annotations

from importlib import resources

import yaml

TIERS = ("read", "write", "critical")


def load_tiers(suite: str) -> dict[str, str]:
    """The tool -> risk tier map of `suite`.

    Raises:
        FileNotFoundError: no tier file for `suite`.
        ValueError: the file is not a map of tool names to a known tier.
    """
    path = resources.files("ztgate.evaluation.agentdojo").joinpath("tiers", f"{suite}.yaml")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"tiers/{suite}.yaml: not a map of tool names to tiers")
    for tool, tier in data.items():
        if not isinstance(tool, str) or tier not in TIERS:
            raise ValueError(f"tiers/{suite}.yaml: {tool!r} has no tier among {', '.join(TIERS)}")
    return dict(data)
