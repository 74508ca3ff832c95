//! Phase 1 integration suite.
