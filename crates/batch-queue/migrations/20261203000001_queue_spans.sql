-- Flushes record what they carry once per shard, not once per request: a span is a run of one
-- group's requests (by `seq`) that a flush claimed, and once submitted the batch-client record
-- carrying it. A request still in the state it was enqueued in (`queued`) is carried by the span
-- covering its `seq` in its group: `dispatching` while the span has no record, `submitted` in
-- the span's record once it has one; with no span covering it, it is pending. Every other state
-- is written on the request's own row as before (retries, the standard API, results). Claiming
-- and adopting a shard write one span row each instead of rewriting every request row (and its
-- body) twice. A span is deleted when its record is settled (every request it carried then has
-- its own state written) or when its flush is released (its requests go back to `pending`).
CREATE TABLE queue_spans (
    span INTEGER PRIMARY KEY AUTOINCREMENT,
    dispatch_id TEXT NOT NULL,          -- the flush that claimed it
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    lo_seq INTEGER NOT NULL,            -- first and last `seq` covered, inclusive
    hi_seq INTEGER NOT NULL,
    record_id TEXT,                     -- NULL until the flush records its submit
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX queue_spans_group ON queue_spans (endpoint, model, lo_seq);
CREATE INDEX queue_spans_dispatch ON queue_spans (dispatch_id);
CREATE INDEX queue_spans_record ON queue_spans (record_id) WHERE record_id IS NOT NULL;
-- Only rows that name a record or a flush need these two indexes: a request enqueued names
-- neither, and inserting it no longer touches them.
DROP INDEX IF EXISTS queue_requests_record;
CREATE INDEX queue_requests_record ON queue_requests (record_id, state) WHERE record_id IS NOT NULL;
DROP INDEX IF EXISTS queue_requests_dispatch;
CREATE INDEX queue_requests_dispatch ON queue_requests (dispatch_id) WHERE dispatch_id IS NOT NULL;
