-- Retention of llm_calls: pruned by call time (ts). The calls a pruning pass deletes are first
-- added up here, per UTC day, paying slice and model, so spend reports and budgets are unchanged
-- by pruning.
CREATE INDEX llm_calls_ts ON llm_calls (ts);

CREATE TABLE llm_spend_pruned (
    day               TEXT NOT NULL,          -- UTC, YYYY-MM-DD
    slice_id          TEXT NOT NULL,
    model             TEXT NOT NULL,
    calls             INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd          REAL NOT NULL,
    PRIMARY KEY (day, slice_id, model)
);
