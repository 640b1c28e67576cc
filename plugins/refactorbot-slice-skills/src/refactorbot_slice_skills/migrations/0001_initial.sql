-- The registry: one row per skill name ever loaded, with the content hash and version now in use.
CREATE TABLE skills (
    name TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    description TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    version INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    updated_at REAL NOT NULL
);

-- Every version of a skill's SKILL.md this slice has seen or written; rollback restores one.
CREATE TABLE skill_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    skill_md TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    PRIMARY KEY (name, version)
);

-- Skills turned off with `refactorbot skills disable`; kept when the skill is away for a while.
CREATE TABLE disabled (
    name TEXT PRIMARY KEY,
    disabled_at REAL NOT NULL
);

-- Each time a skill's body was loaded: how ($mention, always, tool), in which turn.
CREATE TABLE activations (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER,
    how TEXT NOT NULL,
    session_id TEXT,
    execution_id TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX activations_name ON activations (name, created_at);

-- The outcome of each agent turn that used a skill.
CREATE TABLE outcomes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    success INTEGER NOT NULL,
    error TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX outcomes_name ON outcomes (name, created_at);

-- The workshop: proposed new or changed skills, bound to the content hash they change.
CREATE TABLE proposals (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    base_hash TEXT,
    skill_md TEXT NOT NULL,
    rationale TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN ('pending', 'applied', 'rejected', 'stale')),
    reason TEXT,
    session_id TEXT,
    applied_version INTEGER,
    created_at REAL NOT NULL,
    decided_at REAL
);
CREATE INDEX proposals_status ON proposals (status, created_at);
