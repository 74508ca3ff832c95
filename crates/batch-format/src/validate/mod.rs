//! Streaming validation of a batch input JSONL file, reporting what OpenAI would put in a failed
//! batch's `errors.data[]`.
//!
//! Each line is read once, borrowing what it needs (no `serde_json::Value`, no copy of the
//! base64 image strings): by the scanner of `scan.rs`, which finds where a line ends while it
//! checks it, or, when tokens are estimated, by serde probes that also collect the message
//! texts. Memory stays constant apart from one 128-bit hash per `custom_id`. The work is split
//! in two so that it can run on several threads: the facts of one line are found without
//! looking at any other, then `Validator` applies the checks that need the lines before it
//! (duplicate ids, one endpoint, one model) strictly in line order.

mod analyse;
mod checks;
mod facts;
mod ids;
mod options;
mod problem;
mod stream;
mod tally;
mod texts;
mod validator;

#[cfg(test)]
mod tests;

pub use options::ValidationOptions;
pub use problem::{Problem, ProblemCode};
pub use stream::{validate_jsonl, validate_jsonl_parallel};
pub use validator::{ValidationSummary, Validator};
