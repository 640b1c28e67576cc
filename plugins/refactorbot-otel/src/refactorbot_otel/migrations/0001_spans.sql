-- The span store: every finished span, and one row per trace for the list of recent traces.
-- The exporter (a thread of the OpenTelemetry SDK) runs this script too before its first write,
-- so every statement is IF NOT EXISTS.
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,               -- NULL: a root; a remote parent is kept (the caller's span)
    name TEXT NOT NULL,
    kind TEXT NOT NULL,           -- internal, server, client, producer, consumer
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status TEXT NOT NULL,         -- unset, ok, error
    status_message TEXT,
    attributes TEXT NOT NULL,     -- JSON object
    events TEXT                   -- JSON list (exceptions), NULL when none
);
CREATE INDEX IF NOT EXISTS idx_spans_trace ON spans(trace_id);
CREATE INDEX IF NOT EXISTS idx_spans_start ON spans(start_ns);

CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY,
    root_name TEXT,               -- the span without a parent in this process
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    spans INTEGER NOT NULL,
    errors INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_traces_start ON traces(start_ns);
