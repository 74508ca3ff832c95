-- batch-queue's tables in batch-client's SQLite database, recorded in their own migrations
-- table (`_batch_queue_migrations`). `IF NOT EXISTS`: a database made before the queue had
-- migrations already holds these tables, with their rows; this first migration adopts them.
CREATE TABLE IF NOT EXISTS queue_requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,            -- the request id, also its custom_id in every batch
    operation TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,                -- '' when the endpoint takes none
    body TEXT NOT NULL,                 -- the request body JSON, normalised and checked
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    dispatch_id TEXT,
    record_id TEXT,                     -- batch-client's record carrying it now
    batch_ids TEXT NOT NULL DEFAULT '[]',
    tier TEXT,
    result TEXT,
    usage TEXT,
    error TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_requests_group ON queue_requests (state, endpoint, model, seq);
CREATE INDEX IF NOT EXISTS queue_requests_record ON queue_requests (record_id, state);
CREATE INDEX IF NOT EXISTS queue_requests_dispatch ON queue_requests (dispatch_id);
CREATE TABLE IF NOT EXISTS queue_batches (
    record_id TEXT PRIMARY KEY,
    dispatch_id TEXT NOT NULL,
    state TEXT NOT NULL,                -- open | settled
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_batches_state ON queue_batches (state);
