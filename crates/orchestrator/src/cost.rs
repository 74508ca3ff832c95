//! Cost tracking (being written).
