"""The SQLite span store: batches of finished spans written to ``<home>/slices/traces.db``.

The tracer's exporting thread calls ``SpanStore.write``; the ``traces`` slice reads the same file
(WAL: readers never wait for this writer) and prunes it.

A batch crosses into SQLite as JSON arrays unpacked by ``json_each`` inside each statement: the
exporting thread serializes the batch with one ``json.dumps`` per statement and SQLite does the
per-row work in a few calls, each releasing Python's GIL once (``executemany`` would hand the GIL
back and forth once a row, and wait for the event loop's thread each time).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from refactorbot_otel.tracer import SpanBase

# Each span of a batch is a JSON array: [trace_id, span_id, parent_id, name, kind, start_ns, end_ns,
# status, status_message, attributes (object)].
INSERT_SPANS = (
    "INSERT INTO spans (trace_id, span_id, parent_id, name, kind, start_ns, end_ns, status, status_message,"
    " attributes) SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),"
    " json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),"
    " json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]'),"
    " json_extract(value, '$[9]') FROM json_each(?) ORDER BY key"
)
# One summary row per trace of the batch: [trace_id, name, start_ns, end_ns, spans, errors], the name
# being its root's (the span without a parent), else the first span of this process under a remote
# parent. A trace seen before keeps its name; UPDATE_ROOTS then gives each root's name to its trace.
UPSERT_TRACES = (
    "INSERT INTO traces (trace_id, root_name, start_ns, end_ns, spans, errors)"
    " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),"
    " json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]')"
    " FROM json_each(?) WHERE true"
    " ON CONFLICT(trace_id) DO UPDATE SET root_name = coalesce(traces.root_name, excluded.root_name),"
    " start_ns = min(traces.start_ns, excluded.start_ns), end_ns = max(traces.end_ns, excluded.end_ns),"
    " spans = traces.spans + excluded.spans, errors = traces.errors + excluded.errors"
)
UPDATE_ROOTS = (
    "UPDATE traces SET root_name = r.name FROM (SELECT json_extract(value, '$[0]') AS trace_id,"
    " json_extract(value, '$[1]') AS name FROM json_each(?)) AS r WHERE traces.trace_id = r.trace_id"
)


def schema() -> str:
    """Return the store's schema script (the slice's migration; every statement IF NOT EXISTS)."""
    return (files("refactorbot_otel") / "migrations" / "0001_spans.sql").read_text(encoding="utf-8")


def batch_json(spans: Sequence[SpanBase]) -> tuple[str, str, str]:
    """Return the JSON arrays ``INSERT_SPANS``, ``UPSERT_TRACES`` and ``UPDATE_ROOTS`` read."""
    rows: list[list[Any]] = []
    traces: dict[str, list[Any]] = {}
    roots: list[tuple[str, str]] = []
    for s in spans:
        trace_id, start, end, error = s.trace_id, s.start_ns, s.end_ns, s.status == "error"
        rows.append(
            [trace_id, s.span_id, s.parent_id, s.name, s.kind, start, end, s.status, s.status_message, s.attributes]
        )
        summary = traces.get(trace_id)
        if summary is None:
            traces[trace_id] = [trace_id, None, start, end, 1, int(error), start]
            summary = traces[trace_id]
        else:
            summary[2] = min(summary[2], start)
            summary[3] = max(summary[3], end)
            summary[4] += 1
            summary[5] += error
        if s.parent_id is None:
            roots.append((trace_id, s.name))
        elif s.remote_parent and (summary[1] is None or start < summary[6]):
            summary[1], summary[6] = s.name, start
    for trace_id, name in roots:
        traces[trace_id][1] = name
    compact = (",", ":")
    return (
        json.dumps(rows, default=str, separators=compact),
        json.dumps(list(traces.values()), separators=compact),
        json.dumps(roots, separators=compact),
    )


class SpanStore:
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

    def write(self, spans: Sequence[SpanBase]) -> None:
        """Store ``spans`` in one transaction; raise ``sqlite3.Error`` (the batch is not stored)."""
        if not spans:
            return
        rows, traces, roots = batch_json(spans)
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError(f"the span store {self.path} is closed")
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(INSERT_SPANS, (rows,))
                conn.execute(UPSERT_TRACES, (traces,))
                if roots != "[]":
                    conn.execute(UPDATE_ROOTS, (roots,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the connection; later writes fail."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
