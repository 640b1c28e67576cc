-- Delivery reports: what the platform said became of each message the bot sent.

-- out: the platform's reports summed up: NULL (none), sent, delivered (every part), read (every
-- part), failed (any part). `status` stays the send's own outcome, except that a part reported
-- failed turns `sent` into `failed` (never the reverse).
ALTER TABLE messages ADD COLUMN delivery TEXT;
ALTER TABLE messages ADD COLUMN delivered_at REAL;   -- out: when the last part was reported delivered (or read)
ALTER TABLE messages ADD COLUMN read_at REAL;        -- out: when the last part was reported read

-- One row per (platform id, status) reported. message_row is NULL while no sent message has the id
-- yet (a report can overtake the record of a message still being sent); it is linked when it is.
CREATE TABLE delivery_reports (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    platform_id TEXT NOT NULL,
    chat_id TEXT NOT NULL DEFAULT '',        -- '' when the platform's ids are unique per channel
    status TEXT NOT NULL CHECK (status IN ('sent', 'delivered', 'read', 'failed')),
    reason TEXT,
    reported_at REAL NOT NULL,
    message_row INTEGER REFERENCES messages (id) ON DELETE CASCADE,
    UNIQUE (channel, platform_id, chat_id, status)
);
CREATE INDEX delivery_reports_row ON delivery_reports (message_row);
CREATE INDEX delivery_reports_orphans ON delivery_reports (reported_at) WHERE message_row IS NULL;

-- Reports name a platform id without its chat.
CREATE INDEX sent_ids_platform ON sent_ids (channel, platform_id);
