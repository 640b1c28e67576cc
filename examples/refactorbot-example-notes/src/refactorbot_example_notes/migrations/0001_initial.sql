-- Notes: one row per note; tags are a JSON array of strings.
CREATE TABLE notes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    list_name   TEXT    NOT NULL,
    title       TEXT    NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    body        TEXT    NOT NULL DEFAULT '',
    tags        TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(tags)),
    done        INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
    created_at  REAL    NOT NULL,
    updated_at  REAL    NOT NULL
);

-- The dashboard and `list` ask for open notes of one list, newest first.
CREATE INDEX idx_notes_list_done_created ON notes (list_name, done, created_at DESC);
