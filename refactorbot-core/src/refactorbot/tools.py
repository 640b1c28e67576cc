"""The tool contract: what an agent can call, with validated parameters."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from refactorbot.models import Model


class ToolResult(Model):
    """What a tool returns: output text for the model, optional structured data."""

    ok: bool = True
    output: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class ToolContext(Model):
    """What a tool may use while running: its workspace and the caller's identity."""

    model_config = {"arbitrary_types_allowed": True}

    workspace: Path
    session_id: str | None = None
    user_id: str | None = None
    slice: Any = None  # the calling SliceContext, for tools that call other slices


class ToolCall(Model):
    """A tool call about to run; ``before_tool_call`` hooks see (and may veto) it."""

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    call_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None


class Tool(abc.ABC):
    """A tool an agent can call. Register subclasses with ``register_tools``."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    #: The ``[tools.<section>]`` table (and ``RB_<SECTION>_*`` variables) holding its settings.
    config_section: ClassVar[str | None] = None
    #: A pydantic model validating that section; None: the tool takes no settings.
    Config: ClassVar[type[BaseModel] | None] = None
    #: A grouping shown in listings (``files``, ``exec``, ``web``, ...).
    category: ClassVar[str | None] = None

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})
        #: ``config`` validated against ``Config`` (None when the tool takes no settings).
        self.settings: Any = None
        if self.Config is not None:
            from refactorbot.config import validate_section

            section = f"[tools.{self.config_section or self.name}]"
            self.settings = validate_section(self.Config, self.config, section)

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """Return the tool in OpenAI function-calling format."""
        return {
            "type": "function",
            "function": {
                "name": cls.name,
                "description": cls.description,
                "parameters": cls.Params.model_json_schema(),
            },
        }

    def warnings(self) -> list[str]:
        """Return problems with this tool's environment, one line each (none by default).

        Something the operator should know although the tool loaded, e.g. "no OS sandbox on this
        machine". ``refactorbot plugins doctor`` prints them and the tools slice reports itself
        degraded while any tool has one. Keep it quick: it may run on every health check.
        """
        return []

    @abc.abstractmethod
    async def run(self, params: Any, ctx: ToolContext) -> ToolResult:
        """Run with validated ``params``; raise ``ToolError`` to refuse."""


def tool_warnings(registry: Any, settings: Any, env: Any = None) -> list[str]:
    """Return ``<tool>: <warning>`` for every registered tool, built with its configuration section.

    ``registry`` maps tool names to registrations (``host.plugins.registry.tools``); ``settings``
    is the home's ``Settings``. A tool that cannot be built says why instead. Used by
    ``refactorbot plugins doctor``.
    """
    lines: list[str] = []
    for name, registered in sorted(dict(registry).items()):
        cls = getattr(registered, "obj", registered)
        if not (isinstance(cls, type) and issubclass(cls, Tool)):
            continue
        try:
            section = cls.config_section or name
            if cls.Config is not None:
                raw = settings.section("tools", section, cls.Config, env).model_dump(exclude_unset=True)
            else:
                raw = dict(settings.tools.get(section, {}))
            lines += [f"{name}: {warning}" for warning in cls(raw).warnings()]
        except Exception as exc:  # a tool's own problem: reported, never fatal to the report
            lines.append(f"{name}: cannot be built: {type(exc).__name__}: {exc}")
    return lines
