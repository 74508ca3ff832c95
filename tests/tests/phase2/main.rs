//! Phase 2 integration suite.

// Helpers outside `#[test]` functions may panic too: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod provider_tiers;
mod queue;
