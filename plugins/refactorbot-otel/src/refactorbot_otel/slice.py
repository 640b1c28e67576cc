"""The ``traces`` slice: reads the SQLite span store (recent traces, one trace's spans) and prunes it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from typing import Any

from pydantic import BaseModel, Field
from refactorbot import AtomicSlice, RefactorbotError, operation, tracing

from refactorbot_otel.config import TracesConfig

TRACE_ID = r"^[0-9a-f]{32}$"


class RecentParams(BaseModel):
    """Which traces to list."""

    limit: int = Field(50, ge=1, le=500)
    before_ns: int | None = Field(None, ge=0, description="only traces that started before this (paging)")
    errors_only: bool = False
    name_contains: str | None = Field(None, max_length=200, description="root span name contains this text")


class TraceSummary(BaseModel):
    """One trace in the list."""

    trace_id: str
    root_name: str | None
    start_ns: int
    duration_ms: float
    spans: int
    errors: int


class TraceList(BaseModel):
    """Recent traces, newest first."""

    traces: list[TraceSummary]
    stored: bool = Field(description="whether this host writes spans to the store")


class TraceParams(BaseModel):
    """One trace by id."""

    trace_id: str = Field(pattern=TRACE_ID, description="32 lower-case hex digits")


class SpanRow(BaseModel):
    """One span of a trace, placed for a waterfall."""

    span_id: str
    parent_id: str | None
    name: str
    kind: str
    depth: int
    offset_ms: float = Field(description="start, from the trace's first span")
    duration_ms: float
    status: str
    status_message: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]] = Field(default_factory=list)


class TraceDetail(BaseModel):
    """A trace's spans in start order, children after their parent."""

    trace_id: str
    start_ns: int
    duration_ms: float
    spans: list[SpanRow]


class PruneResult(BaseModel):
    """What one retention pass deleted."""

    deleted_spans: int
    deleted_traces: int
    remaining_spans: int


class NoParams(BaseModel):
    """No parameters."""


class TracesSlice(AtomicSlice):
    """The span store of ``refactorbot-otel``: recent traces, a trace's waterfall, retention."""

    slice_id = "traces"
    description = "Recent traces and their spans from the SQLite span store, with retention."
    Config = TracesConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings: TracesConfig = self.config  # type: ignore[assignment]
        self._pruner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the retention loop (off the request path: one batch per transaction)."""
        self._pruner = asyncio.get_running_loop().create_task(self._prune_loop(), name="traces retention")

    async def stop(self) -> None:
        """Stop the retention loop."""
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None

    async def _prune_loop(self) -> None:
        while True:
            try:
                await self._prune()
            except Exception:  # retention retries at the next interval; reads still work
                self.log.exception("pruning the span store failed")
            await asyncio.sleep(self.settings.prune_interval)

    async def _flush(self) -> bool:
        """Export the spans still buffered by this process's tracer; return whether it writes the store."""
        current = tracing.tracer()
        store = getattr(current, "store", None)
        if store is None or store != self.ctx.db_path:
            return False
        flush = getattr(current, "force_flush", None)
        if flush is not None:
            await asyncio.to_thread(flush, 5000)
        return True

    @operation
    async def recent(self, params: RecentParams) -> TraceList:
        """Return the newest traces (started before ``before_ns``), errors only or by root name."""
        stored = await self._flush()
        assert self.db is not None
        where: list[str] = []
        args: list[Any] = []
        if params.before_ns is not None:
            where.append("start_ns < ?")
            args.append(params.before_ns)
        if params.errors_only:
            where.append("errors > 0")
        if params.name_contains:
            where.append("instr(lower(coalesce(root_name, '')), lower(?)) > 0")
            args.append(params.name_contains)
        sql = "SELECT trace_id, root_name, start_ns, end_ns, spans, errors FROM traces"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self.db.fetchall(sql + " ORDER BY start_ns DESC LIMIT ?", (*args, params.limit))
        return TraceList(
            stored=stored,
            traces=[
                TraceSummary(
                    trace_id=r["trace_id"],
                    root_name=r["root_name"],
                    start_ns=r["start_ns"],
                    duration_ms=(r["end_ns"] - r["start_ns"]) / 1e6,
                    spans=r["spans"],
                    errors=r["errors"],
                )
                for r in rows
            ],
        )

    @operation
    async def trace(self, params: TraceParams) -> TraceDetail:
        """Return one trace's spans for a waterfall: offset and duration in ms, depth under its root."""
        await self._flush()
        assert self.db is not None
        rows = await self.db.fetchall(
            "SELECT span_id, parent_id, name, kind, start_ns, end_ns, status, status_message, attributes, events"
            " FROM spans WHERE trace_id = ? ORDER BY start_ns, id",
            (params.trace_id,),
        )
        if not rows:
            raise RefactorbotError(f"no trace {params.trace_id} in the span store (never stored, or pruned)")
        start = min(r["start_ns"] for r in rows)
        end = max(r["end_ns"] for r in rows)
        children: dict[str | None, list[Any]] = {}
        ids = {r["span_id"] for r in rows}
        for r in rows:
            parent = r["parent_id"] if r["parent_id"] in ids else None  # a remote parent is not shown
            children.setdefault(parent, []).append(r)
        ordered: list[SpanRow] = []

        def walk(parent: str | None, depth: int) -> None:
            for r in children.get(parent, []):
                ordered.append(
                    SpanRow(
                        span_id=r["span_id"],
                        parent_id=r["parent_id"],
                        name=r["name"],
                        kind=r["kind"],
                        depth=depth,
                        offset_ms=(r["start_ns"] - start) / 1e6,
                        duration_ms=(r["end_ns"] - r["start_ns"]) / 1e6,
                        status=r["status"],
                        status_message=r["status_message"],
                        attributes=json.loads(r["attributes"]),
                        events=json.loads(r["events"]) if r["events"] else [],
                    )
                )
                walk(r["span_id"], depth + 1)

        walk(None, 0)
        return TraceDetail(trace_id=params.trace_id, start_ns=start, duration_ms=(end - start) / 1e6, spans=ordered)

    @operation
    async def prune(self, params: NoParams) -> PruneResult:
        """Apply retention now: spans past ``max_age_hours``, then the oldest past ``max_spans``."""
        await self._flush()
        return await self._prune()

    async def _prune(self) -> PruneResult:
        assert self.db is not None
        batch = self.settings.prune_batch
        cutoff = int((time.time() - self.settings.max_age_hours * 3600) * 1e9)
        deleted = 0
        while True:  # by age: one batch per transaction, so readers and the exporter interleave
            n = await self.db.atomic(
                _deleted,
                "DELETE FROM spans WHERE id IN (SELECT id FROM spans WHERE start_ns < ? ORDER BY id LIMIT ?)",
                (cutoff, batch),
            )
            deleted += n
            if n < batch:
                break
            await asyncio.sleep(0)
        newest = await self.db.scalar("SELECT max(id) FROM spans")
        count = await self.db.scalar("SELECT count(*) FROM spans")
        excess = count - self.settings.max_spans
        while excess > 0 and newest is not None:  # by count: the oldest ids go
            n = await self.db.atomic(
                _deleted,
                "DELETE FROM spans WHERE id IN (SELECT id FROM spans ORDER BY id LIMIT ?)",
                (min(batch, excess),),
            )
            deleted += n
            excess -= n
            if n == 0:
                break
            await asyncio.sleep(0)
        gone = await self.db.atomic(
            _deleted,
            "DELETE FROM traces WHERE start_ns < ? OR NOT EXISTS"
            " (SELECT 1 FROM spans WHERE spans.trace_id = traces.trace_id)",
            (cutoff,),
        )
        remaining = await self.db.scalar("SELECT count(*) FROM spans")
        return PruneResult(deleted_spans=deleted, deleted_traces=gone, remaining_spans=remaining)


def _deleted(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    """Run a DELETE; return how many rows it removed."""
    return conn.execute(sql, params).rowcount
