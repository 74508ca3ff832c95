-- The poller reads only the unfinished records that are due (`next_poll_at_ms <= now`), and
-- the earliest due time of the rest, from this index instead of every unfinished row.
CREATE INDEX IF NOT EXISTS batch_jobs_due ON batch_jobs (next_poll_at_ms) WHERE state NOT IN ('done', 'error');
