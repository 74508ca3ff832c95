//! Phase 3 integration suite: the orchestrator on simulated, standard and batch tiers.

// Helpers outside `#[test]` functions may panic too: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod batch_session;
mod failures;
mod search;
