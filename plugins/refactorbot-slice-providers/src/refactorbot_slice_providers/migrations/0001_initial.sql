-- Providers and models mirror [slices.providers] (rewritten at every start); API keys are never
-- stored: only the NAME of the environment variable holding each key.
CREATE TABLE providers (
    name        TEXT PRIMARY KEY,
    gateway     TEXT NOT NULL,
    api_key_env TEXT,
    base_url    TEXT,
    updated_at  REAL NOT NULL
);

CREATE TABLE models (
    name                  TEXT PRIMARY KEY,
    provider              TEXT NOT NULL REFERENCES providers (name) ON DELETE CASCADE,
    context_window        INTEGER,
    input_price_per_mtok  REAL NOT NULL DEFAULT 0,
    output_price_per_mtok REAL NOT NULL DEFAULT 0,
    capabilities          TEXT NOT NULL DEFAULT '[]',
    updated_at            REAL NOT NULL
);

-- One row per LLM call: who paid, which model answered, tokens, cost and latency.
CREATE TABLE llm_calls (
    id                INTEGER PRIMARY KEY,
    ts                REAL NOT NULL,
    day               TEXT NOT NULL,          -- UTC, YYYY-MM-DD
    slice_id          TEXT NOT NULL,
    model             TEXT NOT NULL,
    requested_model   TEXT NOT NULL,
    gateway           TEXT,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL NOT NULL DEFAULT 0,
    cost_source       TEXT NOT NULL CHECK (cost_source IN ('gateway', 'price_table', 'unpriced')),
    latency_ms        REAL NOT NULL DEFAULT 0,
    success           INTEGER NOT NULL DEFAULT 1,
    error             TEXT
);
CREATE INDEX llm_calls_day ON llm_calls (day);
CREATE INDEX llm_calls_slice_day ON llm_calls (slice_id, day);

-- Caps in USD; scope '*' covers every call, any other scope is a slice id. Caps from the
-- configuration (source 'config') are re-applied at every start; set_budget writes 'operation'.
CREATE TABLE budgets (
    scope       TEXT PRIMARY KEY,
    daily_usd   REAL CHECK (daily_usd IS NULL OR daily_usd >= 0),
    monthly_usd REAL CHECK (monthly_usd IS NULL OR monthly_usd >= 0),
    source      TEXT NOT NULL CHECK (source IN ('config', 'operation')),
    updated_at  REAL NOT NULL
);
