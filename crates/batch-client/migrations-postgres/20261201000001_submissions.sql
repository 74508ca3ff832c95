-- A submission: one input file as the user submitted it, keyed by its content (endpoint and the
-- SHA-256 of its bytes); see the SQLite migration of the same version.
CREATE TABLE batch_submissions (
    id            TEXT PRIMARY KEY NOT NULL,
    content_key   TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    source_path   TEXT NOT NULL,
    endpoint      TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    lines         BIGINT NOT NULL,
    bytes         BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (content_key, seq)
);

ALTER TABLE batch_jobs ADD COLUMN submission_id TEXT REFERENCES batch_submissions (id);
CREATE INDEX batch_jobs_submission ON batch_jobs (submission_id);
