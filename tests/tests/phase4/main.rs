//! Phase 4 integration suite.
