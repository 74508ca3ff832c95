-- Leases, so that several processes can share one database: a flush in flight is leased to the
-- queue that claimed it (renewed while it submits; another queue releases or adopts it only
-- once the lease has expired), and a request waiting for the standard API is claimed by the
-- queue that sends it (`lease_owner` until `lease_until_ms`), so that one queue calls it.
CREATE TABLE queue_dispatches (
    dispatch_id TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,                -- the queue instance (`qo_…`) carrying the flush
    lease_until_ms INTEGER NOT NULL
);
ALTER TABLE queue_requests ADD COLUMN lease_owner TEXT;
ALTER TABLE queue_requests ADD COLUMN lease_until_ms INTEGER NOT NULL DEFAULT 0;
