-- The orchestrator's own tables in master.db.
CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,           -- JSON
    updated_at REAL NOT NULL
);

CREATE TABLE slice_state (
    slice_id TEXT PRIMARY KEY,
    plugin TEXT,
    version TEXT,
    status TEXT NOT NULL,          -- pending, initializing, running, degraded, failed, stopped
    health TEXT,
    error TEXT,
    restarts INTEGER NOT NULL DEFAULT 0,
    heartbeat_at REAL,
    started_at REAL,
    updated_at REAL NOT NULL
);

CREATE TABLE operation_log (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,
    slice_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    caller TEXT,
    success INTEGER NOT NULL,
    error_type TEXT,
    error_message TEXT,
    duration_ms REAL NOT NULL
);
CREATE INDEX idx_operation_log_ts ON operation_log(ts);
CREATE INDEX idx_operation_log_slice_ts ON operation_log(slice_id, ts);

CREATE TABLE logs (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    level INTEGER NOT NULL,
    level_name TEXT NOT NULL,
    slice_id TEXT,
    logger TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX idx_logs_ts ON logs(ts);
CREATE INDEX idx_logs_slice_ts ON logs(slice_id, ts);
CREATE INDEX idx_logs_level_ts ON logs(level, ts);
