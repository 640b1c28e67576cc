"""The SQLite span store: an SDK ``SpanExporter`` writing finished spans to ``<home>/slices/traces.db``.

The SDK's batch processor calls ``export`` from its own thread; the ``traces`` slice reads the same
file (WAL: readers never wait for this writer) and prunes it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

log = logging.getLogger("refactorbot.otel")

_KIND_NAMES = {0: "internal", 1: "server", 2: "client", 3: "producer", 4: "consumer"}
_STATUS_NAMES = {StatusCode.UNSET: "unset", StatusCode.OK: "ok", StatusCode.ERROR: "error"}


def schema() -> str:
    """Return the store's schema script (the slice's migration; every statement IF NOT EXISTS)."""
    return (files("refactorbot_otel") / "migrations" / "0001_spans.sql").read_text(encoding="utf-8")


def span_row(span: ReadableSpan) -> tuple[Any, ...]:
    """Return one ``spans`` row for a finished span."""
    ctx = span.context
    parent = span.parent
    status = span.status
    events = [
        {"name": e.name, "ts_ns": e.timestamp, "attributes": dict(e.attributes or {})} for e in span.events
    ] or None
    return (
        f"{ctx.trace_id:032x}" if ctx else "",
        f"{ctx.span_id:016x}" if ctx else "",
        f"{parent.span_id:016x}" if parent is not None else None,
        span.name,
        _KIND_NAMES.get(span.kind.value, "internal"),
        span.start_time or 0,
        span.end_time or span.start_time or 0,
        _STATUS_NAMES.get(status.status_code, "unset"),
        status.description,
        json.dumps(dict(span.attributes or {}), default=str, separators=(",", ":")),
        json.dumps(events, default=str, separators=(",", ":")) if events else None,
    )


class SQLiteSpanExporter(SpanExporter):
    """Write each batch of finished spans in one transaction; keep one summary row per trace."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self.path.exists():  # private from the first byte, like every file of the home
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(schema())
            self._conn = conn
        return self._conn

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Store ``spans``; a failure is logged once per batch and reported to the SDK."""
        if self._closed:
            return SpanExportResult.FAILURE
        rows = [span_row(s) for s in spans]
        summary: dict[str, list[Any]] = {}
        for span, row in zip(spans, rows, strict=True):
            trace_id = row[0]
            entry = summary.setdefault(trace_id, [None, None, row[5], row[6], 0, 0])
            if span.parent is None:  # the trace's root
                entry[0] = span.name
            elif span.parent.is_remote and entry[1] is None:  # the first span of this process, until a root comes
                entry[1] = span.name
            entry[2] = min(entry[2], row[5])
            entry[3] = max(entry[3], row[6])
            entry[4] += 1
            entry[5] += int(row[7] == "error")
        try:
            with self._lock:
                conn = self._connect()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(
                        "INSERT INTO spans (trace_id, span_id, parent_id, name, kind, start_ns, end_ns, status,"
                        " status_message, attributes, events) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    conn.executemany(
                        "INSERT INTO traces (trace_id, root_name, start_ns, end_ns, spans, errors)"
                        " VALUES (:trace_id, coalesce(:root, :first), :start, :end, :spans, :errors)"
                        " ON CONFLICT(trace_id) DO UPDATE SET root_name = coalesce(:root, traces.root_name, :first),"
                        " start_ns = min(traces.start_ns, excluded.start_ns),"
                        " end_ns = max(traces.end_ns, excluded.end_ns),"
                        " spans = traces.spans + excluded.spans, errors = traces.errors + excluded.errors",
                        [
                            dict(
                                zip(
                                    ("trace_id", "root", "first", "start", "end", "spans", "errors"),
                                    (tid, *v),
                                    strict=True,
                                )
                            )
                            for tid, v in summary.items()
                        ],
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            log.error("%d span(s) not stored in %s: %s", len(rows), self.path, exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here: every ``export`` commits."""
        return True

    def shutdown(self) -> None:
        """Close the connection."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
