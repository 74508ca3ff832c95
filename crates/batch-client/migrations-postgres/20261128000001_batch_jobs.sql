-- batch-client on PostgreSQL: one row per submitted shard, and its status history. Never holds
-- the API key. The same tables as the SQLite migrations of the same versions.
CREATE TABLE IF NOT EXISTS batch_jobs (
    id                TEXT PRIMARY KEY NOT NULL,
    shard_name        TEXT NOT NULL,
    manifest          TEXT NOT NULL,
    idempotency_key   TEXT NOT NULL UNIQUE,
    endpoint          TEXT NOT NULL,
    input_path        TEXT NOT NULL,
    input_bytes       BIGINT NOT NULL,
    metadata          TEXT NOT NULL,
    input_file_id     TEXT,
    batch_id          TEXT,
    state             TEXT NOT NULL,
    remote_status     TEXT,
    request_total     BIGINT NOT NULL DEFAULT 0,
    request_completed BIGINT NOT NULL DEFAULT 0,
    request_failed    BIGINT NOT NULL DEFAULT 0,
    attempts          BIGINT NOT NULL DEFAULT 1,
    output_file_id    TEXT,
    error_file_id     TEXT,
    output_path       TEXT,
    error_path        TEXT,
    batch_errors      TEXT NOT NULL DEFAULT '[]',
    last_error        TEXT,
    cancel_requested  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at_ms     BIGINT NOT NULL,
    updated_at_ms     BIGINT NOT NULL,
    submitted_at_ms   BIGINT,
    next_poll_at_ms   BIGINT NOT NULL DEFAULT 0,
    poll_interval_ms  BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS batch_jobs_batch_id ON batch_jobs (batch_id);
CREATE INDEX IF NOT EXISTS batch_jobs_state ON batch_jobs (state);

CREATE TABLE IF NOT EXISTS batch_job_events (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id        TEXT NOT NULL REFERENCES batch_jobs (id),
    at_ms         BIGINT NOT NULL,
    state         TEXT NOT NULL,
    remote_status TEXT,
    detail        TEXT
);

CREATE INDEX IF NOT EXISTS batch_job_events_job ON batch_job_events (job_id, seq);
