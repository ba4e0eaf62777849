"""The AgentDojo benchmark through ztgate (`ztgate eval agentdojo`).

agentdojo pulls heavy dependencies (LLM SDKs, langchain), so it is not a
dependency of ztgate: `make eval` installs it in a venv of its own
(`.venv-eval`, pinned by `requirements/eval-constraints.txt`).
"""

from __future__ import annotations

INSTALL_HINT = (
    "agentdojo is not installed in this Python: run 'make eval' "
    "(a separate .venv-eval with ztgate and agentdojo), or "
    "'pip install -c requirements/eval-constraints.txt agentdojo==0.1.35'"
)


def agentdojo_available() -> bool:
    """True if the agentdojo package can be imported."""
    try:
        import agentdojo  # noqa: F401
    except ImportError:
        return False
    return True
