//! `BatchRequestQueue`: accumulates requests, groups them by endpoint and model, flushes at stage barriers and maps results back (not built yet).
