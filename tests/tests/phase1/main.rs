//! Phase 1 (core infrastructure): the wire format, the simulator and the job manager working
//! together. One module per area.

// Helpers outside `#[test]` functions may panic too: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod format_roundtrip;
mod job_manager;
