-- Improvement cycles, the changes they propose, and the audit trail of every step.
CREATE TABLE cycles (
    id INTEGER PRIMARY KEY,
    slice_id TEXT NOT NULL,
    trigger TEXT NOT NULL,              -- who asked: cli, dashboard, schedule, api, ...
    status TEXT NOT NULL,               -- planned, failed
    notes TEXT NOT NULL DEFAULT '',
    plan TEXT NOT NULL DEFAULT '{}',    -- the ImprovementPlan, JSON
    metrics TEXT,                       -- the slice's WindowMetrics when planned, JSON
    error TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX idx_cycles_slice ON cycles(slice_id, id);

CREATE TABLE changes (
    id INTEGER PRIMARY KEY,
    cycle_id INTEGER NOT NULL REFERENCES cycles(id),
    slice_id TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- config, prompt, code
    target TEXT NOT NULL,
    title TEXT NOT NULL,
    change TEXT NOT NULL,               -- JSON: the new value, the new text, the change in words
    previous TEXT,                      -- JSON: what it replaced, for the rollback
    diff TEXT NOT NULL DEFAULT '',
    rationale TEXT NOT NULL,
    expected_effect TEXT NOT NULL,
    risk TEXT NOT NULL,                 -- low, medium, high
    status TEXT NOT NULL,               -- pending, approved, rejected, failed, evaluating, kept, rolled_back, handed_off
    decided_by TEXT,
    reason TEXT,
    candidate TEXT,                     -- what the candidate test found
    deployed_at REAL,
    evaluate_by REAL,                   -- end of the evaluation window
    concluded_at REAL,
    before_metrics TEXT,                -- WindowMetrics, JSON
    after_metrics TEXT,
    verdict TEXT,                       -- better, equal, worse, inconclusive
    refactory_request INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX idx_changes_status ON changes(status, id);
CREATE INDEX idx_changes_slice ON changes(slice_id, id);
CREATE INDEX idx_changes_cycle ON changes(cycle_id, id);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    cycle_id INTEGER,
    change_id INTEGER,
    step TEXT NOT NULL,                 -- cycle, plan, approval, rejection, candidate, deploy, evaluation, keep, rollback, failure, handoff
    actor TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX idx_audit_cycle ON audit(cycle_id, id);
CREATE INDEX idx_audit_change ON audit(change_id, id);
