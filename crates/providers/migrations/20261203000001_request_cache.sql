-- The request cache: one successful answer per exact request (see crates/providers/src/cache.rs).
CREATE TABLE request_cache (
    -- SHA-256 (hex) of the endpoint, the replay seed and the canonical request body.
    key TEXT PRIMARY KEY NOT NULL,
    -- `/v1/chat/completions` or `/v1/images/generations`.
    endpoint TEXT NOT NULL,
    -- The model as the request named it (an alias or a dated snapshot).
    model TEXT NOT NULL,
    -- The snapshot the answer named (`gpt-4o-mini-2024-07-18`); the asked model when it named none.
    snapshot TEXT NOT NULL,
    -- The tier that carried the first answer.
    tier TEXT NOT NULL,
    -- The response body (an image's base64 left out: it is in `file`).
    body TEXT NOT NULL,
    -- An image's bytes, content-addressed, relative to the cache folder.
    file TEXT,
    created_at_ms INTEGER NOT NULL,
    -- How many times the entry answered instead of a call.
    hits INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX request_cache_model ON request_cache (model, snapshot);
