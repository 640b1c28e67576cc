-- The first schema of the slice's own SQLite file. Add 0002_*.sql files for later changes;
-- never edit a migration that has shipped.
CREATE TABLE items (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    text        TEXT    NOT NULL,
    created_at  REAL    NOT NULL
);

CREATE INDEX idx_items_created ON items (created_at);
