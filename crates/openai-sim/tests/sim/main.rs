//! Integration tests of openai-sim over HTTP: every route, every batch transition, faults, stats.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed set-up is a failed test"
)]

mod agreement;
mod auth;
mod batches;
mod faults;
mod files;
mod lifecycle;
mod limits;
mod strict;
mod support;
mod sync;
