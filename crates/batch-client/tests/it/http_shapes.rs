//! http_shapes tests.
