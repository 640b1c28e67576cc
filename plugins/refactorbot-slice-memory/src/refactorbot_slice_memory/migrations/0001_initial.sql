-- Memories belong to one user (and optionally one session); every query filters on user_id.
CREATE TABLE memories (
    id                INTEGER PRIMARY KEY,
    user_id           TEXT NOT NULL,
    session_id        TEXT,
    content           TEXT NOT NULL,
    kind              TEXT NOT NULL DEFAULT 'fact',
    importance        REAL NOT NULL DEFAULT 0.5,
    access_count      INTEGER NOT NULL DEFAULT 0,
    last_accessed     REAL,
    created_at        REAL NOT NULL,
    consolidated_into INTEGER REFERENCES memories (id) ON DELETE SET NULL
);
CREATE INDEX memories_user ON memories (user_id, created_at);
CREATE INDEX memories_user_content ON memories (user_id, content);

CREATE TABLE memory_tags (
    memory_id INTEGER NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    tag       TEXT NOT NULL,
    PRIMARY KEY (memory_id, tag)
) WITHOUT ROWID;
CREATE INDEX memory_tags_tag ON memory_tags (tag, memory_id);

-- External-content FTS index over memories. user_id is indexed too, so a query intersects the
-- user's postings with the terms' instead of ranking every user's matches.
CREATE VIRTUAL TABLE memories_fts USING fts5 (
    content,
    user_id,
    content = 'memories',
    content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, content, user_id) VALUES (new.id, new.content, new.user_id);
END;
CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content, user_id) VALUES ('delete', old.id, old.content, old.user_id);
END;
CREATE TRIGGER memories_au AFTER UPDATE OF content, user_id ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content, user_id) VALUES ('delete', old.id, old.content, old.user_id);
    INSERT INTO memories_fts (rowid, content, user_id) VALUES (new.id, new.content, new.user_id);
END;

-- Which memories a consolidated summary replaced (their text is kept for audit).
CREATE TABLE memory_consolidation (
    id              INTEGER PRIMARY KEY,
    consolidated_id INTEGER NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    source_id       INTEGER NOT NULL,
    source_content  TEXT NOT NULL,
    created_at      REAL NOT NULL
);
CREATE INDEX memory_consolidation_summary ON memory_consolidation (consolidated_id);
