-- The communication slice: channels, the message log, de-duplication, pairing and templates.

CREATE TABLE channels (
    name TEXT PRIMARY KEY,
    plugin TEXT,
    enabled INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,                    -- disabled, starting, running, failed, invalid, stopped
    last_error TEXT,
    last_error_at REAL,
    started_at REAL,
    next_retry_at REAL,
    restarts INTEGER NOT NULL DEFAULT 0,
    inbound_count INTEGER NOT NULL DEFAULT 0,
    outbound_count INTEGER NOT NULL DEFAULT 0,
    failed_count INTEGER NOT NULL DEFAULT 0,
    refused_count INTEGER NOT NULL DEFAULT 0,
    duplicate_count INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);

-- (channel, platform message id) of every message received: redeliveries are dropped.
CREATE TABLE seen (
    channel TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (channel, message_id)
) WITHOUT ROWID;
CREATE INDEX seen_received ON seen (received_at);

-- The message log: direction 'in' (status queued, running, answered, failed, refused, interrupted)
-- and 'out' (status pending, sent, failed).
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    kind TEXT NOT NULL,                      -- in: message; out: reply, pairing, send
    channel TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    sender_id TEXT,
    sender_name TEXT,
    message_id TEXT,                         -- in: the platform's id
    platform_ids TEXT,                       -- out: JSON list of the platform's ids, one or more per part
    reply_to TEXT,
    text TEXT NOT NULL,
    is_group INTEGER NOT NULL DEFAULT 0,
    mentions_bot INTEGER NOT NULL DEFAULT 0,
    media TEXT,                              -- in: JSON list of media references
    status TEXT NOT NULL,
    detail TEXT,                             -- why: refused, failed
    attempts INTEGER NOT NULL DEFAULT 0,
    parts INTEGER NOT NULL DEFAULT 0,
    in_reply_to INTEGER,                     -- out: the inbound row answered
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX messages_created ON messages (created_at);
CREATE INDEX messages_channel ON messages (channel, id);
CREATE INDEX messages_chat ON messages (channel, chat_id, id);
CREATE INDEX messages_status ON messages (direction, status);

-- The platform ids of what the bot sent: a group message replying to one of them addresses the bot.
CREATE TABLE sent_ids (
    channel TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    platform_id TEXT NOT NULL,
    message_row INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (channel, chat_id, platform_id)
) WITHOUT ROWID;
CREATE INDEX sent_ids_row ON sent_ids (message_row);

CREATE TABLE pairing (
    code TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    sender_name TEXT,
    chat_id TEXT NOT NULL,
    status TEXT NOT NULL,                    -- pending, approved, denied
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    decided_at REAL
);
CREATE INDEX pairing_sender ON pairing (channel, sender_id, status);
CREATE INDEX pairing_status ON pairing (status, created_at);

CREATE TABLE approved_senders (
    channel TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    code TEXT,
    approved_at REAL NOT NULL,
    PRIMARY KEY (channel, sender_id)
) WITHOUT ROWID;

CREATE TABLE templates (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    variables TEXT NOT NULL,                 -- JSON list of the $names the body uses
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
