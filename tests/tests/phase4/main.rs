//! Phase 4 integration suite: resume after a crash, hybrid tier selection.
mod hybrid;
mod resume;
