//! Phase 3 integration suite.
