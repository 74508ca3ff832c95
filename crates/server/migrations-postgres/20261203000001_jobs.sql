-- The server's jobs and their events (PostgreSQL: the same statements as SQLite's, whose
-- plain SQL types, TEXT, BIGINT, DOUBLE PRECISION, both take), in the same database as the
-- sessions, recorded in their own migrations table (`_server_migrations`).
CREATE TABLE IF NOT EXISTS server_jobs (
    id TEXT PRIMARY KEY,                -- j_ + a lowercase ULID
    session_id TEXT,                    -- the orchestrator's session, once started
    status TEXT NOT NULL,               -- queued | running | waiting | completed | failed | cancelled
    request TEXT NOT NULL,              -- the POST body as accepted (JSON)
    stage BIGINT NOT NULL DEFAULT 0,    -- stages finished
    stages BIGINT NOT NULL DEFAULT 0,   -- stages in the plan
    iteration BIGINT NOT NULL DEFAULT 0,
    batch_id TEXT,                      -- the batch the job waits on now
    batch_ids TEXT NOT NULL DEFAULT '[]',
    wait_keys TEXT NOT NULL DEFAULT '[]', -- the call keys a waiting job waits on
    estimated_cost DOUBLE PRECISION NOT NULL DEFAULT 0,
    best TEXT,                          -- JSON, once judged
    cost TEXT,                          -- JSON, once finished
    error TEXT,
    owner TEXT,                         -- the server process running it (lease)
    lease_until BIGINT,                 -- ms since the epoch
    created_at_ms BIGINT NOT NULL,
    started_at_ms BIGINT,
    updated_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);
CREATE INDEX IF NOT EXISTS server_jobs_status ON server_jobs (status, created_at_ms);
CREATE INDEX IF NOT EXISTS server_jobs_created ON server_jobs (created_at_ms, id);
CREATE TABLE IF NOT EXISTS server_job_events (
    job_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at TEXT NOT NULL,                   -- RFC 3339
    body TEXT NOT NULL,                 -- the message as sent on the WebSocket
    PRIMARY KEY (job_id, seq)
);
