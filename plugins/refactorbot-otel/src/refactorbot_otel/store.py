"""The SQLite span store: batches of finished spans written to ``<home>/slices/traces.db``.

The tracer's exporting thread calls ``SpanStore.write``; the ``traces`` slice reads the same file
(WAL: readers never wait for this writer) and prunes it.

A batch crosses into SQLite as one JSON array, unpacked by ``json_each`` inside the INSERT: the
exporting thread serializes the whole batch with one ``json.dumps`` and SQLite does the per-row
work without holding Python's GIL, so the event loop keeps running while the batch is written.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from refactorbot_otel.tracer import SpanRecord

# Each span of a batch is a JSON array: [trace_id, span_id, parent_id, remote_parent (0/1), name,
# kind, start_ns, end_ns, status, status_message, attributes (object)].
_BATCH = (
    "WITH b AS (SELECT key, json_extract(value, '$[0]') AS trace_id, json_extract(value, '$[1]') AS span_id,"
    " json_extract(value, '$[2]') AS parent_id, json_extract(value, '$[3]') AS remote,"
    " json_extract(value, '$[4]') AS name, json_extract(value, '$[5]') AS kind,"
    " json_extract(value, '$[6]') AS start_ns, json_extract(value, '$[7]') AS end_ns,"
    " json_extract(value, '$[8]') AS status, json_extract(value, '$[9]') AS status_message,"
    " json_extract(value, '$[10]') AS attributes FROM json_each(?))"
)
INSERT_SPANS = (
    _BATCH + " INSERT INTO spans (trace_id, span_id, parent_id, name, kind, start_ns, end_ns, status,"
    " status_message, attributes, events)"
    " SELECT trace_id, span_id, parent_id, name, kind, start_ns, end_ns, status, status_message, attributes, NULL"
    " FROM b ORDER BY key"
)
# One summary row per trace: its root's name (the span without a parent), else the first span of
# this process under a remote parent, until the root comes; first start, last end, counts.
UPSERT_TRACES = (
    _BATCH + " INSERT INTO traces (trace_id, root_name, start_ns, end_ns, spans, errors)"
    " SELECT trace_id,"
    " coalesce(max(CASE WHEN parent_id IS NULL THEN name END),"
    " (SELECT x.name FROM b AS x WHERE x.trace_id = b.trace_id AND x.remote ORDER BY x.start_ns, x.key LIMIT 1)),"
    " min(start_ns), max(end_ns), count(*), sum(status = 'error')"
    " FROM b GROUP BY trace_id"
    " ON CONFLICT(trace_id) DO UPDATE SET"
    " root_name = coalesce((SELECT max(name) FROM b AS r WHERE r.trace_id = excluded.trace_id"
    " AND r.parent_id IS NULL), traces.root_name, excluded.root_name),"
    " start_ns = min(traces.start_ns, excluded.start_ns), end_ns = max(traces.end_ns, excluded.end_ns),"
    " spans = traces.spans + excluded.spans, errors = traces.errors + excluded.errors"
)


def schema() -> str:
    """Return the store's schema script (the slice's migration; every statement IF NOT EXISTS)."""
    return (files("refactorbot_otel") / "migrations" / "0001_spans.sql").read_text(encoding="utf-8")


def batch_json(spans: Sequence[SpanRecord]) -> str:
    """Return ``spans`` as the JSON array ``INSERT_SPANS`` and ``UPSERT_TRACES`` read."""
    return json.dumps(
        [
            [
                s.trace_id,
                s.span_id,
                s.parent_id,
                1 if s.remote_parent else 0,
                s.name,
                s.kind,
                s.start_ns,
                s.end_ns,
                s.status,
                s.status_message,
                s.attributes,
            ]
            for s in spans
        ],
        default=str,
        separators=(",", ":"),
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

    def write(self, spans: Sequence[SpanRecord]) -> None:
        """Store ``spans`` in one transaction; raise ``sqlite3.Error`` (the batch is not stored)."""
        if not spans:
            return
        payload = batch_json(spans)
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError(f"the span store {self.path} is closed")
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(INSERT_SPANS, (payload,))
                conn.execute(UPSERT_TRACES, (payload,))
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
