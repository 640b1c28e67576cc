"""The tools slice: installed tools, validated and policed execution, and the execution log."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from refactorbot import (
    AtomicSlice,
    BatchWriteFailed,
    BatchWriter,
    HealthState,
    HealthStatus,
    Pruner,
    RefactorbotError,
    TokenBucket,
    Tool,
    ToolCall,
    ToolContext,
    ToolError,
    ToolResult,
    describe_validation_error,
    operation,
    tracing,
)

from refactorbot_slice_tools.models import (
    TOOL_NAME,
    ExecuteParams,
    ExecutionRecord,
    History,
    HistoryParams,
    ListParams,
    Pruned,
    StatsParams,
    ToolInfo,
    ToolLimit,
    ToolLimits,
    ToolList,
    ToolName,
    ToolsConfig,
    ToolStats,
    ToolUsage,
    WorkspaceRoot,
    WorkspaceRoots,
)
from refactorbot_slice_tools.redaction import cut, to_log_json

_INSERT_EXECUTION = (
    "INSERT INTO tool_executions (tool, call_id, parameters, result, success, error, duration_ms,"
    " session_id, user_id, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_TOOL = (
    "INSERT INTO tools (name, description, schema, category, plugin, version, enabled, registered_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT(name) DO UPDATE SET description = excluded.description,"
    " schema = excluded.schema, category = excluded.category, plugin = excluded.plugin,"
    " version = excluded.version, updated_at = excluded.updated_at"
)


class ToolsSlice(AtomicSlice):
    """Registry of installed tools: validated, policed, rate-limited and logged execution."""

    slice_id = "tools"
    version = "0.1.0"
    Config = ToolsConfig

    def __init__(self, ctx: Any, config: BaseModel | None = None) -> None:
        super().__init__(ctx, config)
        self.settings: ToolsConfig = self.config  # type: ignore[assignment]
        self.tools: dict[str, Tool] = {}
        self.infos: dict[str, ToolInfo] = {}
        self.load_errors: dict[str, str] = {}
        self.buckets: dict[str, TokenBucket] = {}
        #: Calls refused by each tool's rate limit since start.
        self.refused: dict[str, int] = {}
        self.workspace = self._workspace_path()
        #: Tools whose own section sets ``workspace``: they cannot run in a per-call workspace.
        self.pinned: set[str] = set()
        #: Real paths under which a call may name its own workspace: configured, then registered.
        self.roots: list[Path] = []
        self._writer: BatchWriter | None = None
        self._pruner = Pruner(
            self._prune, interval=self.settings.retention_interval, logger=self.log, what="tool executions"
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Instantiate every registered tool with its configuration and record it."""
        self.workspace.mkdir(parents=True, exist_ok=True)
        for configured in self.settings.extra_workspace_roots:
            self.roots.append(
                self._checked_root(self._home_relative(configured), "[slices.tools] extra_workspace_roots")
            )
        assert self.db is not None
        self._writer = self.db.batch_writer(_INSERT_EXECUTION)
        for name, per_minute in self.settings.rate_limits.items():
            self.buckets[name] = TokenBucket(per_minute / 60.0, max(1.0, per_minute))
        registry = dict(self.ctx.host.plugins.registry.tools) if self.ctx.host is not None else {}
        for name, registered in sorted(registry.items()):
            tool = self._instantiate(name, registered.obj)
            if tool is not None:
                self.tools[name] = tool
                self.infos[name] = self._info(tool, registered.plugin)
        now = time.time()
        async with self.db.transaction() as conn:
            for info in self.infos.values():
                await conn.execute(
                    _UPSERT_TOOL,
                    (
                        info.name,
                        info.description,
                        json.dumps(info.definition, sort_keys=True),
                        info.category,
                        info.plugin,
                        info.version,
                        now,
                        now,
                    ),
                )
            for name in self.settings.disabled:
                await conn.execute("UPDATE tools SET enabled = 0, updated_at = ? WHERE name = ?", (now, name))
        for row in await self.db.fetchall("SELECT name, enabled FROM tools"):
            if row["name"] in self.infos:
                self.infos[row["name"]].enabled = bool(row["enabled"])
        self.log.info("tools slice: %d tools (%d failed to load)", len(self.tools), len(self.load_errors))
        self._pruner.start()

    async def stop(self) -> None:
        """Stop the retention task and write the buffered execution log."""
        await self._pruner.stop()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    async def health_check(self) -> HealthStatus:
        """Report the database, and as degraded when some tools failed to load or report warnings."""
        status = await super().health_check()
        if status.healthy and self.load_errors:
            names = ", ".join(sorted(self.load_errors))
            return HealthStatus(
                status=HealthState.DEGRADED,
                message=f"{len(self.load_errors)} tool(s) failed to load: {names}",
                details={"load_errors": dict(self.load_errors), "tools": len(self.tools)},
            )
        warnings = await asyncio.to_thread(self._tool_warnings)
        if status.healthy and warnings:
            return HealthStatus(
                status=HealthState.DEGRADED,
                message="; ".join(warnings),
                details={"warnings": warnings, "tools": len(self.tools), "workspace": str(self.workspace)},
            )
        status.details = {"tools": len(self.tools), "workspace": str(self.workspace)}
        return status

    def _tool_warnings(self) -> list[str]:
        """Return ``<tool>: <warning>`` for every loaded tool (``Tool.warnings``, e.g. no OS sandbox)."""
        lines: list[str] = []
        for name, tool in sorted(self.tools.items()):
            try:
                lines += [f"{name}: {warning}" for warning in tool.warnings()]
            except Exception as exc:  # a broken warnings() is itself worth reporting
                lines.append(f"{name}: warnings() failed: {type(exc).__name__}: {exc}")
        return lines

    def _workspace_path(self) -> Path:
        configured = self.settings.workspace
        if not configured:
            return self.ctx.home / "workspace"
        return self._home_relative(configured)

    def _home_relative(self, configured: str) -> Path:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else self.ctx.home / path

    def _checked_root(self, path: Path, where: str) -> Path:
        """Return the real path of a workspace root, refusing one that would expose the home or the system."""
        if "\0" in str(path) or not path.is_absolute():
            raise ToolError(f"{where}: {str(path)[:200]!r} is not an absolute path")
        real = Path(os.path.realpath(path))
        if not real.is_dir():
            raise ToolError(f"{where}: {real} is not an existing folder")
        home = Path(os.path.realpath(self.ctx.home))
        if real == Path(real.anchor) or real == home or real in home.parents:
            raise ToolError(
                f"{where}: {real} holds the refactorbot home or is a file-system root; choose a folder below"
            )
        if home in real.parents and real.relative_to(home).parts[0] in ("slices", "master.db"):
            raise ToolError(f"{where}: {real} holds the host's databases")
        return real

    def _call_workspace(self, tool: Tool, requested: str) -> Path:
        """Return the per-call workspace ``requested``: an existing folder strictly inside an allowed root."""
        if tool.name in self.pinned:
            raise ToolError(f"{tool.name} has its own workspace in [tools.*]; it cannot run in a per-call workspace")
        path = Path(requested)
        if "\0" in requested or not path.is_absolute():
            raise ToolError("workspace must be an absolute path")
        real = Path(os.path.realpath(path))
        if not any(root in real.parents for root in self.roots):
            raise ToolError(f"workspace {requested[:200]} is not inside an allowed workspace root")
        if not real.is_dir():
            raise ToolError(f"workspace {requested[:200]} is not an existing folder")
        return real

    def _instantiate(self, name: str, cls: Any) -> Tool | None:
        if not re.match(TOOL_NAME, name):
            self.load_errors[name] = f"tool name {name!r} is not a valid function name ({TOOL_NAME})"
        elif not (isinstance(cls, type) and issubclass(cls, Tool)):
            self.load_errors[name] = f"{cls!r} is not a Tool subclass"
        else:
            try:
                raw = self._tool_config(name, cls)
            except Exception as exc:  # a bad section is that tool's problem only
                self.load_errors[name] = str(exc)
                self.log.error("tool %s not loaded: %s", name, self.load_errors[name])
                return None
            if isinstance(raw.get("workspace"), str) and not Path(raw["workspace"]).expanduser().is_absolute():
                raw["workspace"] = str(self.ctx.home / raw["workspace"])
            if raw.get("workspace"):
                self.pinned.add(name)
            try:
                tool: Tool = cls(raw)
                cls.schema()
                return tool
            except Exception as exc:  # a tool's bad config or broken schema must not stop the others
                self.load_errors[name] = f"{type(exc).__name__}: {exc}"
        self.log.error("tool %s not loaded: %s", name, self.load_errors[name])
        return None

    def _tool_config(self, name: str, cls: type[Tool]) -> dict[str, Any]:
        """Return ``[tools.<section>]``; validated with ``RB_<SECTION>_<FIELD>`` overrides when the tool has a ``Config``."""
        section = getattr(cls, "config_section", None) or name
        settings = self.ctx.settings
        model = getattr(cls, "Config", None)
        if settings is not None and isinstance(model, type) and issubclass(model, BaseModel):
            validated: BaseModel = settings.section("tools", section, model, self.ctx.env)
            return validated.model_dump(exclude_unset=True)
        return dict(getattr(settings, "tools", {}).get(section, {}))

    def _info(self, tool: Tool, plugin: str) -> ToolInfo:
        record = self.ctx.host.plugins.records.get(plugin) if self.ctx.host is not None else None
        return ToolInfo(
            name=tool.name,
            description=tool.description,
            category=getattr(tool, "category", None) or getattr(tool, "config_section", None) or "general",
            plugin=plugin,
            version=(record.version if record is not None else None) or getattr(tool, "version", None),
            enabled=tool.name not in self.settings.disabled,
            definition=tool.schema(),
        )

    # -- registry --------------------------------------------------------------------------

    @operation(name="list")
    async def list_tools(self, params: ListParams) -> ToolList:
        """List installed tools; ``schemas`` holds the enabled ones in OpenAI function format."""
        infos = [
            info
            for info in self.infos.values()
            if (params.include_disabled or info.enabled) and (params.category in (None, info.category))
        ]
        return ToolList(tools=infos, schemas=[info.definition for info in infos if info.enabled])

    @operation
    async def enable(self, params: ToolName) -> ToolInfo:
        """Enable a tool: it is offered to models and may run."""
        return await self._set_enabled(params.name, True)

    @operation
    async def disable(self, params: ToolName) -> ToolInfo:
        """Disable a tool: it is no longer offered and every call is refused."""
        return await self._set_enabled(params.name, False)

    async def _set_enabled(self, name: str, enabled: bool) -> ToolInfo:
        info = self.infos.get(name)
        if info is None:
            raise ToolError(f"unknown tool '{name}' (installed: {', '.join(sorted(self.infos)) or 'none'})")
        assert self.db is not None
        await self.db.execute(
            "UPDATE tools SET enabled = ?, updated_at = ? WHERE name = ?", (int(enabled), time.time(), name)
        )
        info.enabled = enabled
        return info

    # -- per-call workspaces ---------------------------------------------------------------

    @operation
    async def allow_workspace_root(self, params: WorkspaceRoot) -> WorkspaceRoots:
        """Let calls name workspaces below this folder (another slice only; refused from the API and CLI)."""
        root = self._checked_root(Path(params.path), "workspace root")
        if root not in self.roots:
            self.roots.append(root)
        return WorkspaceRoots(roots=[str(r) for r in self.roots])

    @operation
    async def workspace_roots(self) -> WorkspaceRoots:
        """List the folders under which a call may name its own workspace."""
        return WorkspaceRoots(roots=[str(r) for r in self.roots])

    # -- execution -------------------------------------------------------------------------

    @operation(name="execute")
    async def execute_tool(self, params: ExecuteParams) -> ToolResult:
        """Validate, police and run one tool call; failures come back as ``ok=False`` with an error.

        With tracing on, the call is an ``execute_tool <tool>`` span (OpenTelemetry GenAI conventions).
        """
        if tracing.tracer() is None:
            return await self._execute(params)
        attributes: dict[str, tracing.AttributeValue] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": params.tool,
        }
        if params.call_id:
            attributes["gen_ai.tool.call.id"] = params.call_id
        with tracing.span(f"execute_tool {params.tool}", attributes=attributes) as span:
            result = await self._execute(params)
            span.set_attribute("refactorbot.tool.ok", result.ok)
            if not result.ok:
                span.set_error("tool_error", result.error)
            return result

    async def _execute(self, params: ExecuteParams) -> ToolResult:
        started = time.perf_counter()
        arguments: Any = params.arguments
        call = ToolCall(
            tool=params.tool,
            arguments=arguments if isinstance(arguments, dict) else {},
            call_id=params.call_id,
            session_id=params.session_id,
            user_id=params.user_id,
        )
        try:
            tool, validated = self._check(params.tool, arguments)
            call.arguments = arguments = validated.model_dump(mode="json")
            await self._police(call)
            result = await self._run(tool, validated, params)
        except ToolError as exc:
            result = ToolResult(ok=False, error=str(exc))
        duration_ms = (time.perf_counter() - started) * 1000
        await self._log(call, arguments, result, duration_ms)
        await self._after(call, result)
        return result

    def _check(self, name: str, arguments: Any) -> tuple[Tool, BaseModel]:
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(n for n, i in sorted(self.infos.items()) if i.enabled) or "none"
            raise ToolError(f"unknown tool '{name}' (available: {known})")
        if not self.infos[name].enabled:
            raise ToolError(f"tool '{name}' is disabled")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise ToolError(f"arguments for {name} are not valid JSON: {exc.msg} at position {exc.pos}") from None
        if not isinstance(arguments, dict):
            raise ToolError(f"arguments for {name} must be a JSON object, not {type(arguments).__name__}")
        try:
            return tool, tool.Params.model_validate(arguments)
        except ValidationError as exc:
            detail = describe_validation_error(exc, limit=10)
            raise ToolError(f"invalid arguments for {name}: {detail}") from None

    async def _police(self, call: ToolCall) -> None:
        if self.ctx.host is not None:  # None allows; a reason, or a hook that broke, refuses (PluginHost.aveto)
            reason = await self.ctx.host.plugins.aveto("before_tool_call", call=call)
            if reason is not None:
                raise ToolError(f"{call.tool} refused by policy: {reason}")
        bucket = self.buckets.get(call.tool)
        if bucket is not None and not bucket.try_take():
            self.refused[call.tool] = self.refused.get(call.tool, 0) + 1
            limit = self.settings.rate_limits[call.tool]
            raise ToolError(f"{call.tool} rate limit of {limit:g} calls per minute exceeded; retry later")

    async def _run(self, tool: Tool, validated: BaseModel, params: ExecuteParams) -> ToolResult:
        workspace = self.workspace if params.workspace is None else self._call_workspace(tool, params.workspace)
        ctx = ToolContext(workspace=workspace, session_id=params.session_id, user_id=params.user_id, slice=self.ctx)
        timeout = self.settings.timeouts.get(tool.name, self.settings.timeout)
        try:
            result = await asyncio.wait_for(tool.run(validated, ctx), timeout)
        except TimeoutError:
            raise ToolError(f"{tool.name} timed out after {timeout:g}s") from None
        except RefactorbotError as exc:
            raise ToolError(str(exc)) from None
        except Exception as exc:  # a bug in a tool: tell the model, log the traceback
            self.log.exception("tool %s raised", tool.name)
            raise ToolError(f"{tool.name} failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(result, ToolResult):
            raise ToolError(f"{tool.name} returned {type(result).__name__}, not a ToolResult")
        if not result.ok and not result.error:
            result.error = f"{tool.name} failed"
        return result

    async def _log(self, call: ToolCall, arguments: Any, result: ToolResult, duration_ms: float) -> None:
        """Write the call's row; return once it is committed, so a call the caller sees is in the log.

        Concurrent calls share one commit (the batch writer's group commit).
        """
        if self._writer is None:
            return
        row = (
            call.tool,
            call.call_id,
            to_log_json(arguments, self.settings.log_value_chars),
            cut(result.output, self.settings.log_result_chars),
            int(result.ok),
            cut(result.error, self.settings.log_result_chars),
            round(duration_ms, 3),
            call.session_id,
            call.user_id,
            time.time(),
        )
        try:
            await self._writer.write(row)
        except BatchWriteFailed as exc:  # the tool ran: its result still goes back, the gap is reported
            self.log.error("tool %s ran but its execution-log row was not written: %s", call.tool, exc)

    async def _after(self, call: ToolCall, result: ToolResult) -> None:
        if self.ctx.host is None:
            return
        try:
            await self.ctx.host.plugins.acall("after_tool_call", call=call, result=result)
        except Exception:  # observers must not change the result
            self.log.exception("after_tool_call hook failed for %s", call.tool)

    # -- log -------------------------------------------------------------------------------

    async def _flushed(self) -> Any:
        if self._writer is not None:
            await self._writer.flush()
        assert self.db is not None
        return self.db

    @operation
    async def stats(self, params: StatsParams) -> ToolStats:
        """Return calls, errors and average and p95 duration per tool."""
        db = await self._flushed()
        where: list[str] = ["timestamp >= ?"]
        args: list[Any] = [params.since or 0.0]
        if params.tool:
            where.append("tool = ?")
            args.append(params.tool)
        clause = " AND ".join(where)
        rows = await db.fetchall(
            f"SELECT tool, COUNT(*) AS calls, SUM(1 - success) AS errors, AVG(duration_ms) AS avg_ms,"  # noqa: S608  clause joins fixed column conditions; every value is a ? parameter
            f" MAX(timestamp) AS last_used FROM tool_executions WHERE {clause} GROUP BY tool ORDER BY calls DESC, tool",
            args,
        )
        usage = []
        for row in rows:
            offset = max(0, math.ceil(0.95 * row["calls"]) - 1)
            p95 = await db.scalar(
                f"SELECT duration_ms FROM tool_executions WHERE {clause} AND tool = ?"  # noqa: S608  clause joins fixed column conditions; every value is a ? parameter
                " ORDER BY duration_ms LIMIT 1 OFFSET ?",
                [*args, row["tool"], offset],
            )
            usage.append(
                ToolUsage(
                    tool=row["tool"],
                    calls=row["calls"],
                    errors=row["errors"] or 0,
                    error_rate=round((row["errors"] or 0) / row["calls"], 4),
                    avg_ms=round(row["avg_ms"] or 0.0, 3),
                    p95_ms=round(p95 or 0.0, 3),
                    last_used=row["last_used"],
                )
            )
        return ToolStats(tools=usage, total_calls=sum(u.calls for u in usage))

    async def _prune(self) -> int:
        assert self.db is not None
        return await self.db.prune(
            "tool_executions",
            "timestamp",
            **self.settings.prune_bounds(),
        )

    @operation
    async def prune(self) -> Pruned:
        """Delete logged calls past ``retention_days`` or beyond the newest ``retention_max_rows`` now."""
        db = await self._flushed()
        deleted = await self._pruner.run()
        return Pruned(deleted=deleted, remaining=await db.scalar("SELECT count(*) FROM tool_executions"))

    @operation
    async def limits(self) -> ToolLimits:
        """Return each installed tool's timeout and rate limit, the calls it may start now, and refusals."""
        found = []
        for name, info in sorted(self.infos.items()):
            bucket = self.buckets.get(name)
            available = None
            if bucket is not None:
                elapsed = max(0.0, bucket.clock() - bucket.updated)
                available = round(min(bucket.capacity, bucket.tokens + elapsed * bucket.rate), 3)
            found.append(
                ToolLimit(
                    tool=name,
                    enabled=info.enabled,
                    timeout_s=self.settings.timeouts.get(name, self.settings.timeout),
                    per_minute=self.settings.rate_limits.get(name),
                    available=available,
                    refused=self.refused.get(name, 0),
                )
            )
        return ToolLimits(tools=found)

    @operation
    async def history(self, params: HistoryParams) -> History:
        """Return recent tool calls, newest first, optionally for one tool or session."""
        db = await self._flushed()
        where, args = ["1 = 1"], []
        if params.tool:
            where.append("tool = ?")
            args.append(params.tool)
        if params.session_id:
            where.append("session_id = ?")
            args.append(params.session_id)
        if params.failures_only:
            where.append("success = 0")
        rows = await db.fetchall(
            f"SELECT * FROM tool_executions WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",  # noqa: S608  where joins fixed column conditions; every value is a ? parameter
            [*args, params.limit],
        )
        return History(executions=[_record(row) for row in rows])


def _record(row: Any) -> ExecutionRecord:
    try:
        parameters = json.loads(row["parameters"])
    except (TypeError, ValueError):
        parameters = row["parameters"]
    return ExecutionRecord(
        id=row["id"],
        tool=row["tool"],
        call_id=row["call_id"],
        parameters=parameters,
        result=row["result"],
        success=bool(row["success"]),
        error=row["error"],
        duration_ms=row["duration_ms"],
        session_id=row["session_id"],
        user_id=row["user_id"],
        timestamp=row["timestamp"],
    )
