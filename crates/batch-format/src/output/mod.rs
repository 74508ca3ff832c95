//! Streaming reader for batch output and error files: one [`OutcomeLine`] per request line, bad
//! lines reported as [`LineProblem`]s without stopping, and [`ResultMatcher`] to check the
//! results against the ids that were sent.
//!
//! Lines follow `BatchRequestOutput`: `{id, custom_id, response: {status_code, request_id,
//! body} | null, error: {code, message} | null}`. Unknown fields are ignored everywhere, and
//! response bodies are kept raw so that nothing a caller might need is lost.

mod fields;
mod matcher;
mod outcome;
mod parallel;
mod parse;
mod parsed;
mod reader;
mod usage;

#[cfg(test)]
mod tests;

pub use matcher::{ManifestMatch, ResultMatcher};
pub use outcome::{
    ApiErrorBody, LineProblem, LineProblemKind, Outcome, OutcomeLine, OutcomeLineRef, OutcomeRef,
    RawJson,
};
pub use parallel::{read_output_parallel, read_output_parallel_ref};
pub use reader::{OutputReader, read_output};
pub use usage::Usage;
