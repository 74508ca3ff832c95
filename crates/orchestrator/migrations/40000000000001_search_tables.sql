-- The orchestrator's checkpoint tables, beside batch-client's and batch-queue's in one SQLite
-- file. `IF NOT EXISTS`: a database made before these migrations already has the tables, with
-- its rows, and is adopted as it is.
CREATE TABLE IF NOT EXISTS search_sessions (
    id TEXT PRIMARY KEY,
    idea TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    folder TEXT,
    next_stage INTEGER NOT NULL DEFAULT 0,
    snapshot TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS search_calls (
    session_id TEXT NOT NULL,
    key TEXT NOT NULL,
    operation TEXT NOT NULL,
    tier TEXT NOT NULL,
    record TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (session_id, key)
);

CREATE TABLE IF NOT EXISTS search_stages (
    session_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    iteration INTEGER NOT NULL,
    kind TEXT NOT NULL,
    tier TEXT NOT NULL,
    calls INTEGER NOT NULL,
    reused INTEGER NOT NULL,
    batch_ids TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER,
    PRIMARY KEY (session_id, idx)
);
