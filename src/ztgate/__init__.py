"""ztgate: a zero-trust gateway for autonomous AI agents.

Every tool call an agent makes is a new request that must prove, on its own,
who is asking, for which task and why, before it runs. The public surface is
small: the call model, the pipeline that decides, and the error base class.
"""

from ztgate.errors import GatewayError
from ztgate.models import Decision, Obligation, Outcome, ToolCall, ToolResult, Verdict
from ztgate.pipeline import Pipeline

__version__ = "0.1.0"

__all__ = [
    "Decision",
    "GatewayError",
    "Obligation",
    "Outcome",
    "Pipeline",
    "ToolCall",
    "ToolResult",
    "Verdict",
    "__version__",
]
