"""A small ``tools`` slice for the agent tests, and its plugin (the model is the kit's ``LoopbackGateway``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from refactorbot import AtomicSlice, operation
from refactorbot.testing import plugin_of


class ExecuteParams(BaseModel):
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = None
    user_id: str | None = None
    call_id: str | None = None


class MiniToolsSlice(AtomicSlice):
    """A small ``tools`` slice for agent tests: files_write / files_read in a folder, with a log."""

    slice_id = "tools"
    uses_database = False

    def __init__(self, ctx, config=None):
        super().__init__(ctx, config)
        self.root = Path(ctx.home) / "workspace"
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_entries: list[dict[str, Any]] = []

    @operation(name="list")
    async def list_tools(self) -> dict:
        """Return tool schemas."""
        path = {"path": {"type": "string"}}
        return {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "files_write",
                        "description": "Write a file.",
                        "parameters": {
                            "type": "object",
                            "properties": {**path, "content": {"type": "string"}},
                            "required": ["path", "content"],
                        },
                    },
                },
                {
                    "type": "function",
                    "function": {
                        "name": "files_read",
                        "description": "Read a file.",
                        "parameters": {"type": "object", "properties": path, "required": ["path"]},
                    },
                },
            ]
        }

    @operation(name="execute")
    async def execute_tool(self, params: ExecuteParams) -> dict:
        """Run a tool."""
        self.log_entries.append(params.model_dump())
        target = self.root / str(params.arguments.get("path", ""))
        if params.tool == "files_write":
            target.write_text(params.arguments["content"])
            return {
                "ok": True,
                "output": f"wrote {len(params.arguments['content'])} characters",
                "data": {},
                "error": None,
            }
        if params.tool == "files_read":
            if not target.is_file():
                return {"ok": False, "output": "", "data": {}, "error": f"no such file: {params.arguments.get('path')}"}
            return {"ok": True, "output": target.read_text(), "data": {}, "error": None}
        return {"ok": False, "output": "", "data": {}, "error": f"unknown tool '{params.tool}'"}


#: Registers ``MiniToolsSlice``.
tools_plugin = plugin_of(slices=[MiniToolsSlice], name="mini-tools")
