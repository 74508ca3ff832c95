//! The HTTP API, WebSocket progress, dashboard, job store and workers (not built yet).
