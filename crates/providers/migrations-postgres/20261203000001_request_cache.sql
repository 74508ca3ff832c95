-- The request cache on PostgreSQL: the same table as SQLite's (migrations/), in PostgreSQL's
-- types. One successful answer per exact request (see crates/providers/src/cache.rs).
CREATE TABLE IF NOT EXISTS request_cache (
    key TEXT PRIMARY KEY NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    tier TEXT NOT NULL,
    body TEXT NOT NULL,
    file TEXT,
    created_at_ms BIGINT NOT NULL,
    hits BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS request_cache_model ON request_cache (model, snapshot);
