-- The orchestrator's checkpoint tables on PostgreSQL: the same tables as SQLite's
-- (migrations/), in PostgreSQL's types, beside batch-client's and batch-queue's.
CREATE TABLE IF NOT EXISTS search_sessions (
    id TEXT PRIMARY KEY,
    idea TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    folder TEXT,
    next_stage BIGINT NOT NULL DEFAULT 0,
    snapshot TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS search_calls (
    session_id TEXT NOT NULL,
    key TEXT NOT NULL,
    operation TEXT NOT NULL,
    tier TEXT NOT NULL,
    record TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (session_id, key)
);

CREATE TABLE IF NOT EXISTS search_stages (
    session_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    iteration BIGINT NOT NULL,
    kind TEXT NOT NULL,
    tier TEXT NOT NULL,
    calls BIGINT NOT NULL,
    reused BIGINT NOT NULL,
    batch_ids TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    PRIMARY KEY (session_id, idx)
);
