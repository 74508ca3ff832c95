//! Phase 4 integration suite: resume after a crash, hybrid tier selection, cost accounting.

// Helpers outside `#[test]` functions may panic too: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod cache;
mod cost;
mod hybrid;
mod resume;
