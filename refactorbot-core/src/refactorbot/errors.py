"""Exception types raised by refactorbot; each message is one line a user can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


def one_line(text: object, limit: int = 300) -> str:
    """Return ``text`` collapsed to one line of at most ``limit`` characters (for error messages)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe_validation_error(exc: ValidationError, limit: int = 3) -> str:
    """Return a one-line summary of a pydantic ``ValidationError``: ``field: message; ...``."""
    errors = exc.errors()
    parts = [f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in errors[:limit]]
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)


class RefactorbotError(Exception):
    """Base class of every error refactorbot raises on purpose."""


class ConfigError(RefactorbotError):
    """Raise when configuration (TOML file or ``RB_*`` variable) is invalid."""


class PluginError(RefactorbotError):
    """Raise when a plugin fails to load or register and strict mode is on."""


class SliceUnavailable(RefactorbotError):
    """Raise when a slice is not installed, not enabled, or not running."""


class ResourceLimitExceeded(RefactorbotError):
    """Raise when a slice's concurrency, rate or time limit refuses a request."""


class OperationTimeout(ResourceLimitExceeded):
    """Raise when an operation runs past its slice's timeout."""


class RateLimited(ResourceLimitExceeded):
    """Raise when a slice's rate limit refuses a request."""


class LLMCallRefused(RefactorbotError):
    """Raise when a ``before_llm_call`` hook vetoes a call (a budget, a policy)."""


class GatewayError(RefactorbotError):
    """Raise when an LLM gateway fails to produce a response."""


class ToolError(RefactorbotError):
    """Raise when a tool refuses its input or fails to run."""


class PathOutsideWorkspace(ToolError):
    """Raise when a path escapes the workspace a tool is confined to."""


class OperationFailed(RefactorbotError):
    """Raise from ``SliceContext.call`` when the called operation returned ``success=False``.

    ``error_type`` is the response's (``"timeout"``, ``"refused"``, ...); two of them have their
    own subclass, for a caller that handles them apart: ``OperationNotFound`` and ``InvalidPayload``.
    """

    def __init__(self, target: str, error_type: str | None, message: str | None) -> None:
        super().__init__(f"{target} failed: {message}")
        self.target = target
        self.error_type = error_type
        self.error_message = message

    @staticmethod
    def of(target: str, error_type: str | None, message: str | None) -> OperationFailed:
        """Return the error for a failed response: the subclass its ``error_type`` has, if any."""
        cls = {"unknown_operation": OperationNotFound, "invalid_payload": InvalidPayload}.get(error_type or "")
        return (cls or OperationFailed)(target, error_type, message)


class OperationNotFound(OperationFailed):
    """Raise from ``SliceContext.call`` when the slice has no operation of that name (``unknown_operation``).

    A slice calling an operation that an older version of another slice lacks catches it to fall back.
    """


class InvalidPayload(OperationFailed):
    """Raise from ``SliceContext.call`` when the payload does not match the operation's input model."""


class MigrationError(RefactorbotError):
    """Raise when a schema migration fails; the database is left as it was before it."""
