CREATE TABLE requests (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    title         TEXT    NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    repo          TEXT    NOT NULL,
    target_branch TEXT    NOT NULL,
    test_command  TEXT    NOT NULL CHECK (json_valid(test_command)),
    created_at    REAL    NOT NULL
);

CREATE TABLE plans (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  INTEGER NOT NULL REFERENCES requests(id),
    design      TEXT    NOT NULL,
    base_commit TEXT    NOT NULL,
    planner     TEXT    NOT NULL,
    warnings    TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(warnings)),
    created_at  REAL    NOT NULL
);

CREATE TABLE tasks (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    plan_id            INTEGER NOT NULL REFERENCES plans(id),
    seq                INTEGER NOT NULL,
    title              TEXT    NOT NULL,
    detail             TEXT    NOT NULL DEFAULT '',
    scope              TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(scope)),
    acceptance         TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(acceptance)),
    depends            TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(depends)),
    state              TEXT    NOT NULL DEFAULT 'planned',
    agent              TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    branch             TEXT,
    worktree           TEXT,
    start_commit       TEXT,
    head_commit        TEXT,
    diff_stat          TEXT,
    diff_lines         INTEGER,
    diff               TEXT,
    files              TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(files)),
    acceptance_ok      INTEGER,
    acceptance_output  TEXT,
    test_ok            INTEGER,
    test_output        TEXT,
    review             TEXT,
    risks              TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(risks)),
    coder_answer       TEXT,
    requeue_context    TEXT,
    failure            TEXT,
    updated_at         REAL    NOT NULL,
    UNIQUE (plan_id, seq)
);

CREATE INDEX idx_tasks_plan_state ON tasks (plan_id, state);
CREATE INDEX idx_tasks_agent_state ON tasks (agent, state);

CREATE TABLE orchestrations (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    plan_id        INTEGER NOT NULL REFERENCES plans(id),
    agents         INTEGER NOT NULL,
    coders         TEXT    NOT NULL,
    target_branch  TEXT    NOT NULL,
    land           INTEGER NOT NULL DEFAULT 0,
    status         TEXT    NOT NULL,
    integration    TEXT    NOT NULL,
    integration_head TEXT  NOT NULL,
    tests_green    INTEGER NOT NULL DEFAULT 0,
    report         TEXT    CHECK (report IS NULL OR json_valid(report)),
    resumes        INTEGER NOT NULL DEFAULT 0,
    started_at     REAL    NOT NULL,
    finished_at    REAL
);

CREATE TABLE agents (
    name             TEXT    NOT NULL,
    orchestration_id INTEGER NOT NULL REFERENCES orchestrations(id),
    kind             TEXT    NOT NULL,
    last_seen        REAL,
    PRIMARY KEY (name, orchestration_id)
);

CREATE TABLE merge_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    plan_id     INTEGER NOT NULL REFERENCES plans(id),
    task_id     INTEGER NOT NULL REFERENCES tasks(id),
    attempt     INTEGER NOT NULL,
    before_head TEXT    NOT NULL,
    after_head  TEXT,
    outcome     TEXT    NOT NULL,
    detail      TEXT    NOT NULL DEFAULT '',
    created_at  REAL    NOT NULL
);

CREATE INDEX idx_merge_attempts_plan ON merge_attempts (plan_id, id);
