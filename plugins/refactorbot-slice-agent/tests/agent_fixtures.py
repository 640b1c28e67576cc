"""Test plugins for the agent: a gateway speaking real HTTP to ``ModelServer``, and a small tools slice."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from refactorbot import AtomicSlice, LLMChunk, LLMGateway, LLMResponse, ToolCallRequest, Usage, hookimpl, operation


def _usage(data: dict[str, Any] | None) -> Usage:
    data = data or {}
    return Usage(prompt_tokens=data.get("prompt_tokens", 0), completion_tokens=data.get("completion_tokens", 0))


class LoopbackGateway(LLMGateway):
    """OpenAI chat completions over HTTP with the standard library (blocking I/O in a thread)."""

    name = "loopback"

    def _request(self, body: dict[str, Any]) -> urllib.request.Request:
        return urllib.request.Request(
            self.config["api_base"].rstrip("/") + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )

    def _body(self, messages, model, tools, params, stream=False) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": messages, **params}
        if tools:
            body["tools"] = tools
        if stream:
            body["stream"] = True
        return body

    async def complete(self, messages, model, tools=None, **params) -> LLMResponse:
        def post() -> dict[str, Any]:
            with urllib.request.urlopen(self._request(self._body(messages, model, tools, params)), timeout=10) as r:
                return json.loads(r.read())

        data = await asyncio.to_thread(post)
        message = data["choices"][0]["message"]
        calls = [
            ToolCallRequest(
                id=c["id"], name=c["function"]["name"], arguments=json.loads(c["function"]["arguments"] or "{}")
            )
            for c in message.get("tool_calls") or []
        ]
        return LLMResponse(
            content=message.get("content") or "",
            tool_calls=calls,
            model=data.get("model", model),
            usage=_usage(data.get("usage")),
            gateway=self.name,
        )

    async def stream(self, messages, model, tools=None, **params):
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        request = self._request(self._body(messages, model, tools, params, stream=True))

        def read() -> None:
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    for raw in r:
                        line = raw.decode().strip()
                        if line.startswith("data:"):
                            loop.call_soon_threadsafe(queue.put_nowait, line[5:].strip())
            except Exception as exc:  # surfaced in the consumer
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=read, daemon=True).start()
        partial: dict[int, dict[str, Any]] = {}
        while (item := await queue.get()) is not None:
            if isinstance(item, Exception):
                raise item
            if item == "[DONE]":
                continue
            data = json.loads(item)
            choice = (data.get("choices") or [{}])[0]
            delta = choice.get("delta") or {}
            for tc in delta.get("tool_calls") or []:
                slot = partial.setdefault(tc.get("index", 0), {"id": "", "name": "", "arguments": ""})
                slot["id"] = tc.get("id") or slot["id"]
                fn = tc.get("function") or {}
                slot["name"] = fn.get("name") or slot["name"]
                slot["arguments"] += fn.get("arguments") or ""
            finish = choice.get("finish_reason")
            calls = []
            if finish:
                calls = [
                    ToolCallRequest(id=s["id"], name=s["name"], arguments=json.loads(s["arguments"] or "{}"))
                    for _, s in sorted(partial.items())
                ]
            usage = _usage(data["usage"]) if data.get("usage") else None
            if delta.get("content") or calls or finish or usage:
                yield LLMChunk(
                    content=delta.get("content") or "",
                    tool_calls=calls,
                    finish_reason=finish,
                    usage=usage,
                    model=data.get("model", model),
                )


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


class TestPlugin:
    REFACTORBOT_API = 1

    @hookimpl
    def register_gateways(self, register):
        register(LoopbackGateway)


class ToolsPlugin:
    REFACTORBOT_API = 1

    @hookimpl
    def register_slices(self, register):
        register(MiniToolsSlice)


gateway_plugin = TestPlugin()
tools_plugin = ToolsPlugin()
