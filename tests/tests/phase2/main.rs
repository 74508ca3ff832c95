//! Phase 2 integration suite.
mod queue;
