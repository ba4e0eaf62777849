"""The tool registry: which tools exist, where they live and how risky they are."""

from ztgate.tools.model import RiskTier, Tool, ToolName

__all__ = ["RiskTier", "Tool", "ToolName"]
