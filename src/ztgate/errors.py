"""The exception hierarchy.

Exceptions mean "could not evaluate" or "could not do"; an expected denial is a
`Verdict`, never an exception. Every error builds its message from typed fields
and offers `diagnostics()` for the command line.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class of every error ztgate raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def diagnostics(self) -> str:
        """A one-line, human-readable explanation for the command line."""
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ConfigError(GatewayError):
    """The configuration is invalid: names the file, the key and the reason."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {reason}")


class StoreError(GatewayError):
    """The durable store could not be read or written."""


class StoreUnavailableError(StoreError):
    """The database is unreachable, locked or read-only; callers must fail closed."""


class NotFoundError(GatewayError):
    """A named object (tool, record, ...) does not exist."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} {name!r} not found")


class ConflictError(GatewayError):
    """A named object already exists or the change conflicts with stored state."""


class InvalidInputError(GatewayError):
    """Input at the edge (a request body, a CLI argument, a file) is malformed."""


class UpstreamError(GatewayError):
    """The tool's upstream failed, timed out or answered something unusable."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class AuditError(GatewayError):
    """The audit log could not be written, read or verified."""


class IdentityError(GatewayError):
    """An identity could not be issued or did not verify."""


class PolicyLoadError(GatewayError):
    """A policy set could not be loaded: each problem as `file:line: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems) or ["the policy set could not be loaded"]
        super().__init__("; ".join(self.problems))
