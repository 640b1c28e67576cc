-- Sessions keyed by (channel, chat_id); at most one active session per key.
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    channel       TEXT NOT NULL,
    chat_id       TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    title         TEXT,
    metadata      TEXT NOT NULL DEFAULT '{}',
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    archived_at   REAL,
    message_count INTEGER NOT NULL DEFAULT 0,
    token_count   INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX sessions_active_key ON sessions (channel, chat_id) WHERE status = 'active';
CREATE INDEX sessions_user ON sessions (user_id, updated_at);
CREATE INDEX sessions_idle ON sessions (status, updated_at);

CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    session_id   TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    role         TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content      TEXT NOT NULL DEFAULT '',
    tool_calls   TEXT,            -- JSON list of OpenAI-style tool calls, assistant turns only
    tool_call_id TEXT,            -- the call a tool message answers
    name         TEXT,
    tokens       INTEGER NOT NULL,
    duration_ms  REAL,            -- how long producing this message took (assistant turns)
    created_at   REAL NOT NULL
);
CREATE INDEX messages_session ON messages (session_id, id);
