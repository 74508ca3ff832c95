-- A submission: one input file as the user submitted it, keyed by its content (endpoint and the
-- SHA-256 of its bytes), so submitting the same file again finds its records instead of creating
-- and billing a second batch. `seq` is 0 for the first submission of a content and counts the
-- ones made on purpose after it (`--new`); the unique pair makes two racing submits agree.
CREATE TABLE batch_submissions (
    id            TEXT PRIMARY KEY NOT NULL,
    content_key   TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    source_path   TEXT NOT NULL,
    endpoint      TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    lines         INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (content_key, seq)
);

-- The submission a record (one shard of it) belongs to; NULL for records submitted one shard at
-- a time (`submit_batch`).
ALTER TABLE batch_jobs ADD COLUMN submission_id TEXT REFERENCES batch_submissions (id);
CREATE INDEX batch_jobs_submission ON batch_jobs (submission_id);
