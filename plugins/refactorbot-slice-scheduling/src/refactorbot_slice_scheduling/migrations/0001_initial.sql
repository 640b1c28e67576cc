-- Jobs, their runs (each claimed here before it starts), alerts and self-diagnostics results.
CREATE TABLE jobs (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    name                 TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    kind                 TEXT    NOT NULL CHECK (kind IN ('cron', 'every', 'at')),
    spec                 TEXT    NOT NULL,
    tz                   TEXT    NOT NULL,
    target               TEXT    NOT NULL CHECK (json_valid(target)),
    policy               TEXT    NOT NULL CHECK (json_valid(policy)),
    description          TEXT    NOT NULL DEFAULT '',
    system               INTEGER NOT NULL DEFAULT 0 CHECK (system IN (0, 1)),
    paused               INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    anchor               REAL    NOT NULL,
    next_run_at          REAL,
    last_run_at          REAL,
    last_status          TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    created_at           REAL    NOT NULL,
    updated_at           REAL    NOT NULL
);
CREATE INDEX idx_jobs_next ON jobs (next_run_at) WHERE paused = 0 AND next_run_at IS NOT NULL;

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id        INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    scheduled_for REAL    NOT NULL,
    trigger       TEXT    NOT NULL CHECK (trigger IN ('schedule', 'misfire', 'catch_up', 'manual')),
    status        TEXT    NOT NULL CHECK (
        status IN ('queued', 'running', 'succeeded', 'failed', 'timeout', 'interrupted', 'skipped')
    ),
    attempts      INTEGER NOT NULL DEFAULT 0,
    claimed_at    REAL    NOT NULL,
    started_at    REAL,
    ended_at      REAL,
    duration_ms   REAL,
    output        TEXT,
    error         TEXT,
    delivery      TEXT,
    steps         TEXT CHECK (steps IS NULL OR json_valid(steps)),
    UNIQUE (job_id, scheduled_for)
);
CREATE INDEX idx_runs_job ON runs (job_id, id DESC);
CREATE INDEX idx_runs_status ON runs (status) WHERE status IN ('queued', 'running');
CREATE INDEX idx_runs_claimed ON runs (claimed_at);

CREATE TABLE alerts (
    key           TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    subject       TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
    message       TEXT NOT NULL,
    value         REAL,
    first_at      REAL NOT NULL,
    last_seen_at  REAL NOT NULL,
    last_sent_at  REAL,
    sent_count    INTEGER NOT NULL DEFAULT 0,
    suppressed    INTEGER NOT NULL DEFAULT 0,
    resolved_at   REAL,
    delivery      TEXT
);

CREATE TABLE diagnostics (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    slice_id   TEXT    NOT NULL,
    ran_at     REAL    NOT NULL,
    passed     INTEGER NOT NULL CHECK (passed IN (0, 1)),
    report     TEXT    NOT NULL CHECK (json_valid(report))
);
CREATE INDEX idx_diagnostics_slice ON diagnostics (slice_id, id DESC);
