"""``notes_append``: a small workspace tool that appends a line to a notes file inside the workspace."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from refactorbot import hookimpl
from refactorbot.tools import Tool, ToolContext, ToolResult

REFACTORBOT_API = 1


class AppendParams(BaseModel):
    path: str = Field(min_length=1, max_length=200, description="notes file, relative to the workspace")
    line: str = Field(max_length=1000, description="the line to append")


class NotesAppend(Tool):
    name = "notes_append"
    description = "Append one line to a notes file in the workspace."
    Params = AppendParams

    async def run(self, params: Any, ctx: ToolContext) -> ToolResult:
        root = ctx.workspace.resolve()
        target = (root / params.path).resolve()
        if target != root and root not in target.parents:
            return ToolResult(output="", error=f"{params.path} is outside the workspace")
        if "\n" in params.line:
            return ToolResult(output="", error="the line holds a line break")
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as notes:
            notes.write(params.line + "\n")
        return ToolResult(output=f"appended to {target.relative_to(root)}")


@hookimpl
def register_tools(register: Any) -> None:
    register(NotesAppend)
