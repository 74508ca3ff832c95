//! Phase 2 integration suite.
