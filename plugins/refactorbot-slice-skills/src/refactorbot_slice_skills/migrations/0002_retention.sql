-- What retention passes deleted from activations and outcomes, per skill: a skill's usage counts
-- (skills list, show, the dashboard) keep adding up after its oldest rows are pruned.
CREATE TABLE usage_pruned (
    name TEXT PRIMARY KEY,
    activations INTEGER NOT NULL DEFAULT 0,
    last_used REAL,
    successes INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0
);
-- Retention orders each table by time: one index range per batch.
CREATE INDEX activations_created ON activations (created_at);
CREATE INDEX outcomes_created ON outcomes (created_at);
