//! batch-client integration tests: the HTTP shapes against wiremock, and the client and
//! `BatchJobManager` against openai-sim with faults. One module per area.

// The helpers outside `#[test]` functions, too, may panic: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client_sim;
mod downloads;
mod exactly_once;
mod faults;
mod http_shapes;
mod killed;
mod lifecycle;
mod secrets;
mod submissions;
mod support;
