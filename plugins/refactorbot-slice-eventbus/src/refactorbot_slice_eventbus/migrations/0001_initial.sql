-- The event log: one row per published event, in publish order ("offset" is its position).
CREATE TABLE events (
    "offset" INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    source TEXT,
    published_at REAL NOT NULL
);

-- One row per subscriber ever seen: where it is (every event up to acked_offset is done for it)
-- and what happened to its events, cumulative across restarts.
CREATE TABLE subscribers (
    name TEXT PRIMARY KEY,
    pattern TEXT NOT NULL,
    acked_offset INTEGER NOT NULL,
    created_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    dead INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    blocked INTEGER NOT NULL DEFAULT 0,
    blocked_seconds REAL NOT NULL DEFAULT 0,
    block_timeouts INTEGER NOT NULL DEFAULT 0,
    expired INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);

-- Events a subscriber failed on max_attempts times, with a copy of the event (retention may delete
-- the original). status: dead, requeued (waiting for redelivery), redelivered.
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    source TEXT,
    published_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'dead' CHECK (status IN ('dead', 'requeued', 'redelivered')),
    dead_at REAL NOT NULL,
    requeued_at REAL,
    redelivered_at REAL
);
CREATE INDEX dead_letters_by_subscriber ON dead_letters (subscriber, status, id);
CREATE INDEX dead_letters_by_status ON dead_letters (status, id);
