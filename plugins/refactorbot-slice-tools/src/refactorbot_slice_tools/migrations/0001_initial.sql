-- The tools the slice found installed (enabled state survives restarts) and every call made.
CREATE TABLE tools (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    schema TEXT NOT NULL,
    category TEXT NOT NULL DEFAULT '',
    plugin TEXT,
    version TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    registered_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

CREATE TABLE tool_executions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tool TEXT NOT NULL,
    call_id TEXT,
    parameters TEXT NOT NULL,
    result TEXT,
    success INTEGER NOT NULL,
    error TEXT,
    duration_ms REAL NOT NULL,
    session_id TEXT,
    user_id TEXT,
    timestamp REAL NOT NULL
);

CREATE INDEX idx_tool_executions_tool_time ON tool_executions (tool, timestamp);
CREATE INDEX idx_tool_executions_session_time ON tool_executions (session_id, timestamp);
CREATE INDEX idx_tool_executions_time ON tool_executions (timestamp);
