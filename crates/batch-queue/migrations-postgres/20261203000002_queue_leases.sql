-- Leases of flushes in flight and claims of standard-API fallbacks; see the SQLite migration of
-- this version.
CREATE TABLE queue_dispatches (
    dispatch_id TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    lease_until_ms BIGINT NOT NULL
);
ALTER TABLE queue_requests ADD COLUMN lease_owner TEXT;
ALTER TABLE queue_requests ADD COLUMN lease_until_ms BIGINT NOT NULL DEFAULT 0;
