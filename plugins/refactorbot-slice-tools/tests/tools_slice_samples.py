"""Tools and a policy used by the tools slice's tests, as plugins built by the testing kit."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, Field
from refactorbot.errors import ToolError
from refactorbot.testing import BuiltPlugin, plugin_of
from refactorbot.tools import Tool, ToolContext, ToolResult


class EchoParams(BaseModel):
    model_config = {"extra": "forbid"}

    text: str = Field(min_length=1)
    count: int = Field(1, ge=1, le=5)
    api_token: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class EchoTool(Tool):
    name = "echo"
    description = "Repeat text."
    Params = EchoParams
    category = "sample"

    async def run(self, params: EchoParams, ctx: ToolContext) -> ToolResult:
        prefix = self.config.get("prefix", "")
        return ToolResult(output=prefix + params.text * params.count, data={"workspace": str(ctx.workspace)})


class NapParams(BaseModel):
    seconds: float = 0.0


class NapTool(Tool):
    name = "nap"
    description = "Sleep a while."
    Params = NapParams

    async def run(self, params: NapParams, ctx: ToolContext) -> ToolResult:
        await asyncio.sleep(params.seconds)
        return ToolResult(output="rested")


class BoomTool(Tool):
    name = "boom"
    description = "Fail in different ways."
    Params = NapParams

    async def run(self, params: NapParams, ctx: ToolContext) -> ToolResult:
        if params.seconds > 1:
            raise ToolError("refused on purpose")
        if params.seconds > 0:
            return "not a ToolResult"  # type: ignore[return-value]
        raise RuntimeError("kaboom")


class PickyTool(Tool):
    name = "picky"
    description = "Refuses its configuration."
    Params = NapParams
    config_section = "picky-section"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        if self.config.get("fail"):
            raise ValueError("bad picky configuration")

    async def run(self, params: NapParams, ctx: ToolContext) -> ToolResult:
        return ToolResult(output="picky ran")


SAMPLE_TOOLS = plugin_of(tools=[EchoTool, NapTool, BoomTool, PickyTool], name="sample-tools")


class Policy:
    """Vetoes echo calls whose text is 'forbidden'; records what ran."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []
        self.before: list[dict[str, Any]] = []

    def plugin(self) -> BuiltPlugin:
        """Return the plugin implementing the two hooks with this policy's methods."""
        return plugin_of(hooks=[self.before_tool_call, self.after_tool_call], name="policy")

    async def before_tool_call(self, call: Any) -> Any:
        self.before.append(dict(call.arguments))
        if call.arguments.get("text") == "forbidden":
            return "forbidden words are not allowed"
        if call.arguments.get("text") == "explode":
            raise RuntimeError("policy engine down")
        return None

    def after_tool_call(self, call: Any, result: Any) -> None:
        self.seen.append((call.tool, result.ok))
