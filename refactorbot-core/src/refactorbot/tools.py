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

    @abc.abstractmethod
    async def run(self, params: Any, ctx: ToolContext) -> ToolResult:
        """Run with validated ``params``; raise ``ToolError`` to refuse."""
