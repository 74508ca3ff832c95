-- A lease per record, so two processes never carry the same submit at once, and every batch
-- created for a record (one per attempt), so any of its batch ids finds it.
ALTER TABLE batch_jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE batch_jobs ADD COLUMN lease_until_ms BIGINT NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS batch_job_batches (
    batch_id      TEXT PRIMARY KEY NOT NULL,
    job_id        TEXT NOT NULL REFERENCES batch_jobs (id),
    attempt       BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
