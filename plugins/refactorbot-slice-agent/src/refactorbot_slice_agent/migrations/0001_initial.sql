-- One row per agent run: what was asked, what came back, and what it cost.
CREATE TABLE executions (
    id                TEXT PRIMARY KEY,
    session_id        TEXT,
    user_id           TEXT,
    request           TEXT NOT NULL,
    response          TEXT NOT NULL,
    mode              TEXT NOT NULL CHECK (mode IN ('single', 'two_phase')),
    model             TEXT,
    plan              TEXT,
    steps             INTEGER NOT NULL,
    tool_calls        TEXT NOT NULL DEFAULT '[]',   -- JSON: [{"tool", "ok", "duration_ms"}]
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    duration_ms       REAL NOT NULL,
    success           INTEGER NOT NULL,
    limit_hit         TEXT,
    error             TEXT,
    prompt_version    INTEGER,
    created_at        REAL NOT NULL
);
CREATE INDEX executions_created ON executions (created_at);
CREATE INDEX executions_session ON executions (session_id, created_at);

-- Versioned prompt templates: set_prompt adds a version, the newest one is used.
CREATE TABLE prompt_templates (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    content    TEXT NOT NULL,
    note       TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (name, version)
);
