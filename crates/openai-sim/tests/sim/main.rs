//! Integration tests of openai-sim over HTTP: every route, every batch transition, faults, stats.

mod auth;
mod batches;
mod faults;
mod files;
mod lifecycle;
mod limits;
mod strict;
mod support;
mod sync;
