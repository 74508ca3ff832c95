//! Phase 4 integration suite: resume after a crash, hybrid tier selection, cost accounting.
mod cost;
mod hybrid;
mod resume;
