"""``AgentSlice``: the agent loop as a slice, with its executions log and prompt templates."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from refactorbot import AtomicSlice, BatchWriter, Pruner, RefactorbotError, operation

from refactorbot_slice_agent.loop import AgentRun, workspace_path
from refactorbot_slice_agent.models import (
    AgentConfig,
    Execution,
    ExecutionsParams,
    PromptName,
    PromptTemplate,
    PromptVersionsParams,
    Pruned,
    RollbackPromptParams,
    RunParams,
    RunResult,
    SetPromptParams,
)
from refactorbot_slice_agent.prompts import DEFAULTS

_INSERT_EXECUTION = (
    "INSERT INTO executions (id, session_id, user_id, request, response, mode, model, plan, steps, tool_calls,"
    " prompt_tokens, completion_tokens, duration_ms, success, limit_hit, error, prompt_version, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class AgentSlice(AtomicSlice):
    """The agent: context from session, memory and project rules; an LLM loop with tools; two-phase runs."""

    slice_id = "agent"
    version = "0.1.0"
    requires = ("session", "memory", "tools")
    Config = AgentConfig
    config: AgentConfig

    def __init__(self, ctx: Any, config: Any = None) -> None:
        super().__init__(ctx, config)
        self._prompts: dict[str, tuple[int, str]] = {}
        self._writer: BatchWriter | None = None
        self._rules: tuple[tuple[str, int, int, int], str] | None = None  # (file, mtime, size, inode), text
        self._pruner = Pruner(
            self._prune, interval=self.config.retention_interval, logger=self.log, what="agent executions"
        )

    async def initialize(self) -> None:
        """Open the database, add the default prompt templates once and load the newest versions."""
        await super().initialize()
        assert self.db is not None
        now = time.time()
        await self.db.executemany(
            "INSERT OR IGNORE INTO prompt_templates (name, version, content, note, created_at) VALUES (?, 1, ?, ?, ?)",
            [(name, text, "default", now) for name, text in DEFAULTS.items()],
        )
        rows = await self.db.fetchall(
            "SELECT name, version, content FROM prompt_templates p WHERE version ="
            " (SELECT MAX(version) FROM prompt_templates q WHERE q.name = p.name)"
        )
        self._prompts = {r["name"]: (r["version"], r["content"]) for r in rows}
        self._writer = self.db.batch_writer(_INSERT_EXECUTION)

    async def start(self) -> None:
        """Start pruning the executions log (at once, then every ``retention_interval`` seconds)."""
        self._pruner.start()

    async def stop(self) -> None:
        """Stop the retention task."""
        await self._pruner.stop()

    async def _prune(self) -> int:
        assert self.db is not None
        return await self.db.prune(
            "executions",
            "created_at",
            **self.config.prune_bounds(),
        )

    # -- used by the loop ------------------------------------------------------------------

    def prompt(self, name: str) -> str:
        """Return the newest version of a prompt template."""
        return self._prompts.get(name, (0, DEFAULTS.get(name, "")))[1]

    def rules_path(self, workspace: str | None = None) -> Path:
        """Return the project rules file: configured, or ``AGENTS.md`` in the run's workspace
        (``workspace``, given per run) or else the configured one."""
        if self.config.rules_file:
            path = Path(self.config.rules_file).expanduser()
            return path if path.is_absolute() else self.ctx.home / path
        if workspace:
            return Path(workspace) / "AGENTS.md"
        return workspace_path(self.ctx.home, self.config.workspace) / "AGENTS.md"

    def rules_text(self, workspace: str | None = None) -> str:
        """Return the project rules for the system prompt ("" without a rules file).

        The file is read again only when its size or modification time changed (one ``stat`` a run).
        """
        path = self.rules_path(workspace)
        try:
            info = path.stat()
        except OSError:
            return ""
        key = (str(path), info.st_mtime_ns, info.st_size, info.st_ino)
        if self._rules is not None and self._rules[0] == key:
            return self._rules[1]
        try:
            text = path.read_text(encoding="utf-8", errors="replace")[: self.config.rules_max_chars]
        except OSError:
            return ""
        rendered = f"Project rules ({path.name}):\n{text.strip()}" if text.strip() else ""
        self._rules = (key, rendered)
        return rendered

    def record(self, params: RunParams, result: RunResult) -> None:
        """Queue the run for the executions table (written in batches, off the request path)."""
        if self._writer is None:
            return
        calls = [{"tool": c.tool, "ok": c.ok, "duration_ms": c.duration_ms} for c in result.tool_calls]
        self._writer.add(
            (
                result.execution_id,
                params.session_id,
                params.user_id,
                params.message,
                result.answer,
                result.mode,
                result.model,
                result.plan,
                result.steps,
                json.dumps(calls),
                result.tokens.prompt_tokens,
                result.tokens.completion_tokens,
                result.duration_ms,
                int(result.success),
                result.limit_hit,
                result.error,
                self._prompts.get("system", (None,))[0],
                time.time(),
            )
        )

    # -- operations ------------------------------------------------------------------------

    @operation
    async def run(self, params: RunParams) -> RunResult:
        """Answer a message: recall context, call the model, run its tool calls, loop until an answer."""
        return await AgentRun(self, params).run()

    @operation(stream=True)
    async def stream_run(self, params: RunParams, emit: Callable[[str], Awaitable[None]]) -> RunResult:
        """Like ``run``, streamed: the answer's text is emitted as the model writes it (``host.astream``)."""
        run = AgentRun(self, params)
        async for text in run.stream():
            await emit(text)
        assert run.result is not None  # set when the stream ends
        return run.result

    @operation
    async def executions(self, params: ExecutionsParams) -> list[Execution]:
        """Return recent runs, newest first."""
        assert self.db is not None and self._writer is not None
        await self._writer.flush()
        where, args = [], []
        for column in ("session_id", "user_id"):
            value = getattr(params, column)
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self.db.fetchall(
            f"SELECT * FROM executions{clause} ORDER BY created_at DESC LIMIT ?",  # noqa: S608  clause joins fixed "<column> = ?" conditions; values are parameters
            (*args, params.limit),
        )
        return [
            Execution(**{**dict(r), "tool_calls": json.loads(r["tool_calls"]), "success": bool(r["success"])})
            for r in rows
        ]

    @operation
    async def prune(self) -> Pruned:
        """Delete runs past ``retention_days`` or beyond the newest ``retention_max_rows`` now."""
        assert self.db is not None and self._writer is not None
        await self._writer.flush()
        deleted = await self._pruner.run()
        return Pruned(deleted=deleted, remaining=await self.db.scalar("SELECT count(*) FROM executions"))

    @operation
    async def get_prompt(self, params: PromptName) -> PromptTemplate:
        """Return a prompt template (the newest version unless one is named)."""
        assert self.db is not None
        if params.version is None:
            row = await self.db.fetchone(
                "SELECT * FROM prompt_templates WHERE name = ? ORDER BY version DESC LIMIT 1", (params.name,)
            )
        else:
            row = await self.db.fetchone(
                "SELECT * FROM prompt_templates WHERE name = ? AND version = ?", (params.name, params.version)
            )
        if row is None:
            known = ", ".join(sorted(self._prompts)) or "none"
            raise RefactorbotError(f"no prompt '{params.name}' version {params.version or 'latest'} (known: {known})")
        return PromptTemplate(**dict(row))

    @operation
    async def set_prompt(self, params: SetPromptParams) -> PromptTemplate:
        """Save a new version of a prompt template; runs use it from now on."""
        assert self.db is not None
        async with self.db.transaction() as conn:
            async with conn.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM prompt_templates WHERE name = ?", (params.name,)
            ) as cursor:
                row = await cursor.fetchone()
            version = int(row[0]) if row else 1
            now = time.time()
            await conn.execute(
                "INSERT INTO prompt_templates (name, version, content, note, created_at) VALUES (?, ?, ?, ?, ?)",
                (params.name, version, params.content, params.note, now),
            )
        self._prompts[params.name] = (version, params.content)
        return PromptTemplate(
            name=params.name, version=version, content=params.content, note=params.note, created_at=now
        )

    @operation
    async def list_prompts(self) -> list[PromptTemplate]:
        """Return the newest version of every prompt template."""
        assert self.db is not None
        rows = await self.db.fetchall(
            "SELECT * FROM prompt_templates p WHERE version ="
            " (SELECT MAX(version) FROM prompt_templates q WHERE q.name = p.name) ORDER BY name"
        )
        return [PromptTemplate(**dict(r)) for r in rows]

    @operation
    async def prompt_versions(self, params: PromptVersionsParams) -> list[PromptTemplate]:
        """Return every version of a prompt template, newest first (the first one is what runs use)."""
        assert self.db is not None
        rows = await self.db.fetchall(
            "SELECT * FROM prompt_templates WHERE name = ? ORDER BY version DESC", (params.name,)
        )
        if not rows:
            known = ", ".join(sorted(self._prompts)) or "none"
            raise RefactorbotError(f"no prompt '{params.name}' (known: {known})")
        return [PromptTemplate(**dict(r)) for r in rows]

    @operation
    async def rollback_prompt(self, params: RollbackPromptParams) -> PromptTemplate:
        """Make an earlier version current again: saved as a new version with its text (history is kept)."""
        old = await self.get_prompt(PromptName(name=params.name, version=params.version))
        return await self.set_prompt(
            SetPromptParams(name=params.name, content=old.content, note=f"rollback to version {params.version}")
        )
