"""One agent run: build the context, call the model, run its tool calls, loop until an answer."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from refactorbot import LLMResponse, OperationFailed, RefactorbotError, SliceUnavailable, ToolCallRequest, Usage

from refactorbot_slice_agent.models import RunParams, RunResult, TokenCount, ToolCallRecord
from refactorbot_slice_agent.prompts import render
from refactorbot_slice_agent.textcalls import StreamFilter, TextToolCall, final_answer, parse_tool_lines

if TYPE_CHECKING:
    from refactorbot_slice_agent.slice import AgentSlice

_MULTI_STEP = re.compile(
    r"\b((make|write|draft|create|need)\s+(a|the|me\s+a)\s+plan|plan\s+(out|for|how)|planning|refactor\w*"
    r"|step[- ]by[- ]step|multi[- ]step|migrate|migration)\b",
    re.IGNORECASE,
)
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*])\s+", re.MULTILINE)


def choose_mode(message: str, min_chars: int) -> str:
    """Return ``two_phase`` for long, multi-step or planning requests, ``single`` otherwise."""
    if len(message) >= min_chars or _MULTI_STEP.search(message) or len(_LIST_ITEM.findall(message)) >= 3:
        return "two_phase"
    return "single"


def _assistant_with_calls(content: str, calls: list[ToolCallRequest]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in calls
        ],
    }


class AgentRun:
    """The state of one run; ``run()`` returns the result, ``stream()`` yields the answer as it comes."""

    def __init__(self, agent: AgentSlice, params: RunParams) -> None:
        self.agent = agent
        self.ctx = agent.ctx
        self.config = agent.config
        self.params = params
        self.started = time.perf_counter()
        self.execution_id = uuid.uuid4().hex
        self.usage = TokenCount()
        self.records: list[ToolCallRecord] = []
        self.new_messages: list[dict[str, Any]] = []
        self.steps = 0
        self.limit_hit: Literal["steps", "tokens"] | None = None
        self.plan: str | None = None
        self.planning_calls = 0
        self.mode = (
            params.mode if params.mode != "auto" else choose_mode(params.message, self.config.two_phase_min_chars)
        )
        self.max_steps = params.max_steps or self.config.max_steps
        self.result: RunResult | None = None
        self.skills_used: list[str] = []

    # -- context ---------------------------------------------------------------------------

    def _models(self) -> tuple[str | None, str | None]:
        base = self.params.model or self.config.model
        if self.mode != "two_phase":
            return None, base
        if self.params.model:
            return self.params.model, self.params.model
        return self.config.planning_model or base, self.config.execution_model or base

    async def _tool_schemas(self) -> list[dict[str, Any]]:
        if not self.ctx.has_slice("tools"):
            return []
        try:
            listed = await self.ctx.call("tools.list")
        except (SliceUnavailable, OperationFailed) as exc:
            self.agent.log.warning("tools.list failed: %s", exc)
            return []
        # tools.list answers {"tools": [...], "schemas": [...]}, {"tools": [schemas]} or a bare list.
        if isinstance(listed, dict):
            schemas = listed["schemas"] if "schemas" in listed else listed.get("tools", [])
        else:
            schemas = listed
        return [s for s in schemas or [] if isinstance(s, dict) and "function" in s]

    def _given_history(self) -> list[dict[str, Any]] | None:
        """Return the history the caller passed, when it was read with the budget this run would use."""
        given = self.params.history
        if given is None or self.config.history_tokens or (self.config.model and not self.params.model):
            return None
        return [m for m in given if m.get("role") != "system"]

    async def _history(self) -> list[dict[str, Any]]:
        given = self._given_history()
        if given is not None:
            return given
        if not self.params.session_id or not self.ctx.has_slice("session"):
            return []
        payload: dict[str, Any] = {"session_id": self.params.session_id}
        if self.config.history_tokens:
            payload["max_tokens"] = self.config.history_tokens
        elif self.params.model or self.config.model:
            payload["model"] = self.params.model or self.config.model  # its context window sets the budget
        try:
            history = await self.ctx.call("session.history", **payload)
        except (SliceUnavailable, OperationFailed) as exc:
            self.agent.log.warning("session.history failed: %s", exc)
            return []
        return [m for m in history.get("messages", []) if m.get("role") != "system"]

    async def _memories(self) -> list[str]:
        if self.params.memories is not None:
            return self.params.memories
        if not self.params.user_id or not self.config.memory_limit or not self.ctx.has_slice("memory"):
            return []
        limit = self.config.memory_limit
        try:
            found = await self.ctx.call(
                "memory.search", user_id=self.params.user_id, query=self.params.message, limit=limit
            )
            memories = found.get("memories", [])
            if not memories:  # nothing matches the words: the newest memories still tell who is talking
                found = await self.ctx.call("memory.search", user_id=self.params.user_id, query="", limit=limit)
                memories = found.get("memories", [])
        except (SliceUnavailable, OperationFailed) as exc:
            self.agent.log.warning("memory.search failed: %s", exc)
            return []
        return [m["content"] for m in memories]

    async def _skills(self, schemas: list[dict[str, Any]]) -> str:
        """Return the skills slice's prompt block (and activate ``$mentions``); swap in its tool schemas."""
        if not self.ctx.has_slice("skills"):
            return ""
        try:
            block = await self.ctx.call(
                "skills.prompt",
                message=self.params.message,
                session_id=self.params.session_id,
                execution_id=self.execution_id,
            )
        except (SliceUnavailable, OperationFailed) as exc:
            self.agent.log.warning("skills.prompt failed: %s", exc)
            return ""
        self.skills_used = list(block.get("activated", []))
        replaced = block.get("tool_schemas") or {}
        schemas[:] = [replaced.get(s["function"]["name"], s) for s in schemas]
        return str(block.get("text") or "")

    def _rules(self) -> str:
        return self.agent.rules_text(self.params.workspace)

    def _tools_text(self, schemas: list[dict[str, Any]]) -> str:
        lines = []
        for schema in schemas:
            fn = schema["function"]
            params = json.dumps(fn.get("parameters", {}).get("properties", {}), separators=(",", ":"))
            lines.append(f"- {fn['name']}: {fn.get('description', '')} Parameters: {params}")
        return "\n".join(lines)

    async def _context(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, str | None]:
        """Return (messages, native tool schemas or None, execution model)."""
        schemas = await self._tool_schemas()
        skills = await self._skills(schemas)
        history = await self._history()
        memories = await self._memories()
        values = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "rules": self._rules(),
            "memories": ("What you remember about this user:\n" + "\n".join(f"- {m}" for m in memories))
            if memories
            else "",
            "user_id": self.params.user_id or "",
        }
        native = self.config.native_tools
        if schemas and not native:
            values["tools"] = render(self.agent.prompt("tool_fallback"), {"tools": self._tools_text(schemas)})
        if history and history[-1].get("role") == "user" and history[-1].get("content") == self.params.message:
            history = history[:-1]  # the caller already stored this turn in the session
        user = {"role": "user", "content": self.params.message}
        planning_model, execution_model = self._models()
        if self.mode == "two_phase":
            planner_values = {**values, "tools": ", ".join(s["function"]["name"] for s in schemas) or "none"}
            planner = [{"role": "system", "content": render(self.agent.prompt("planner"), planner_values)}]
            response = await self._complete([*planner, *history, user], planning_model, None)
            self.planning_calls = 1
            self.plan = final_answer(response.content)[0] or None
            if self.plan:
                values["plan"] = f"Plan to follow, step by step:\n{self.plan}"
        system_text = render(self.agent.prompt("system"), values)
        system = {"role": "system", "content": f"{system_text}\n\n{skills}" if skills else system_text}
        return [system, *history, user], (schemas if native and schemas else None), execution_model

    # -- model and tools -------------------------------------------------------------------

    def _count(self, usage: Usage | None) -> None:
        if usage is not None:
            self.usage.prompt_tokens += usage.prompt_tokens
            self.usage.completion_tokens += usage.completion_tokens
            self.usage.total_tokens = self.usage.prompt_tokens + self.usage.completion_tokens

    async def _complete(self, messages: list[dict[str, Any]], model: str | None, tools: Any) -> LLMResponse:
        self.steps += 1
        response = await self.ctx.complete(messages, model=model, tools=tools)
        self._count(response.usage)
        self.model_used = response.model or model or ""
        return response

    async def _run_tool(self, call_id: str, name: str, arguments: dict[str, Any], error: str | None) -> str:
        started = time.perf_counter()
        ok, output, failure = False, "", error
        if failure is None:
            try:
                where = {} if self.params.workspace is None else {"workspace": self.params.workspace}
                result = await self.ctx.call(
                    "tools.execute",
                    tool=name,
                    arguments=arguments,
                    session_id=self.params.session_id,
                    user_id=self.params.user_id,
                    call_id=call_id,
                    **where,
                )
                ok, output = bool(result.get("ok", True)), str(result.get("output") or "")
                failure = None if ok else str(result.get("error") or "the tool failed")
            except SliceUnavailable:
                failure = "no tools slice is installed (pip install refactorbot-slice-tools)"
            except OperationFailed as exc:
                failure = exc.error_message or str(exc)
        self.records.append(
            ToolCallRecord(
                id=call_id,
                tool=name,
                arguments=arguments,
                ok=ok,
                output=output[:2000],
                error=failure,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
        )
        text = output if ok else f"ERROR: {failure}"
        limit = self.config.tool_output_chars
        return text if len(text) <= limit else text[:limit] + f"\n[cut: {len(text) - limit} more characters]"

    async def _act(self, messages: list[dict[str, Any]], response: LLMResponse) -> bool:
        """Run the response's tool calls and extend ``messages``; return False when it is an answer."""
        if response.tool_calls:
            assistant = _assistant_with_calls(response.content, response.tool_calls)
            added = [assistant]
            for call in response.tool_calls:
                text = await self._run_tool(call.id, call.name, call.arguments, None)
                added.append({"role": "tool", "tool_call_id": call.id, "content": text})
        else:
            text_calls: list[TextToolCall] = parse_tool_lines(response.content)
            if not text_calls:
                return False
            results = []
            for tc in text_calls:
                text = await self._run_tool(tc.id, tc.name, tc.arguments, tc.error)
                results.append(f"TOOL RESULT {tc.name}:\n{text}")
            added = [
                {"role": "assistant", "content": response.content},
                {"role": "user", "content": "\n\n".join(results)},
            ]
        messages.extend(added)
        self.new_messages.extend(added)
        return True

    def _over_budget(self) -> bool:
        if self.usage.total_tokens > self.config.max_run_tokens:
            self.limit_hit = "tokens"
            return True
        if self.steps - self.planning_calls >= self.max_steps:
            self.limit_hit = "steps"
            return True
        return False

    def _limit_message(self) -> str:
        if self.limit_hit == "tokens":
            return (
                f"I stopped before finishing: this request used {self.usage.total_tokens} tokens, over the limit of"
                f" {self.config.max_run_tokens} ([slices.agent] max_run_tokens). Ask me to continue, or narrow it down."
            )
        return (
            f"I stopped before finishing: {len(self.records)} tool call(s) in {self.max_steps} steps did not reach a"
            f" final answer (limit: [slices.agent] max_steps = {self.max_steps}). Ask me to continue, or narrow it down."
        )

    # -- entry points ----------------------------------------------------------------------

    async def run(self) -> RunResult:
        """Run to an answer (or a limit) and return the result."""
        self.model_used = ""
        try:
            messages, tools, model = await self._context()
            content = ""
            while True:
                response = await self._complete(messages, model, tools)
                if not await self._act(messages, response):
                    content = response.content
                    break
                if self._over_budget():
                    break
        except RefactorbotError as exc:
            return await self._finish("", error=str(exc))
        return await self._finish(content)

    async def stream(self) -> AsyncIterator[str]:
        """Yield the answer's text as the model produces it; ``self.result`` is set at the end."""
        self.model_used = ""
        shown: list[str] = []
        raw = ""
        try:
            messages, tools, model = await self._context()
            while True:
                self.steps += 1
                text_filter = StreamFilter()
                parts: list[str] = []
                calls: list[ToolCallRequest] = []
                usage = None
                async for chunk in self.ctx.stream(messages, model=model, tools=tools):
                    parts.append(chunk.content)
                    calls.extend(chunk.tool_calls)
                    usage = chunk.usage or usage
                    self.model_used = chunk.model or self.model_used
                    visible = text_filter.feed(chunk.content) if chunk.content else ""
                    if visible:
                        shown.append(visible)
                        yield visible
                tail = text_filter.finish()
                if tail:
                    shown.append(tail)
                    yield tail
                self._count(usage)
                raw = "".join(parts)
                response = LLMResponse(content=raw, tool_calls=calls, usage=usage or Usage())
                if not await self._act(messages, response):
                    break
                if self._over_budget():
                    message = "\n" + self._limit_message()
                    shown.append(message)
                    yield message
                    break
        except RefactorbotError as exc:
            self.result = await self._finish("", error=str(exc))
            yield self.result.answer
            return
        self.result = await self._finish(raw, shown="".join(shown))

    async def _finish(self, content: str, error: str | None = None, shown: str | None = None) -> RunResult:
        """Build, record and return the result; ``shown`` is the text a stream already delivered."""
        facts: list[str]
        if error is not None:
            answer, facts = f"Sorry, I could not answer: {error}", []
        elif self.limit_hit:
            answer, facts = (shown.strip() if shown is not None else self._limit_message()), []
        else:
            answer, facts = final_answer(content)
            if shown is not None:
                answer = shown.strip()
        if error is None:
            self.new_messages.append({"role": "assistant", "content": answer})
        result = RunResult(
            answer=answer,
            success=error is None and self.limit_hit is None,
            execution_id=self.execution_id,
            mode="two_phase" if self.mode == "two_phase" else "single",
            model=self.model_used,
            plan=self.plan,
            steps=self.steps,
            tool_calls=self.records,
            tokens=self.usage,
            limit_hit=self.limit_hit,
            remember=facts,
            messages=self.new_messages,
            duration_ms=round((time.perf_counter() - self.started) * 1000, 3),
            error=error,
        )
        self.result = result
        self.agent.record(self.params, result)
        await self._skill_outcome(result)
        return result

    async def _skill_outcome(self, result: RunResult) -> None:
        """Tell the skills slice how a turn that used skills ended."""
        used = [
            *self.skills_used,
            *(str(c.arguments.get("name")) for c in self.records if c.tool == "skill_activate" and c.ok),
        ]
        if not used:
            return
        try:
            await self.ctx.call(
                "skills.outcome",
                execution_id=self.execution_id,
                names=list(dict.fromkeys(used)),
                success=result.success,
                error=result.error,
            )
        except (SliceUnavailable, OperationFailed) as exc:
            self.agent.log.warning("skills.outcome failed: %s", exc)


def workspace_path(home: Path, configured: str | None) -> Path:
    """Return the project folder: configured (``~`` expanded, relative to home) or ``<home>/workspace``."""
    if not configured:
        return home / "workspace"
    path = Path(configured).expanduser()
    return path if path.is_absolute() else home / path
