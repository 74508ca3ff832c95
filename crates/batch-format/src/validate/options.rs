//! `ValidationOptions`: the limits a file is held to and what its lines are expected to say.

use std::collections::HashSet;

use super::problem::{Problem, ProblemCode};
use crate::endpoint::Endpoint;
use crate::jsonl::MAX_LINE_BYTES;

/// Limits and expectations for [`validate_jsonl`](crate::validate_jsonl) and
/// [`Validator`](crate::Validator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationOptions {
    /// Most lines (requests) a file may have; OpenAI's limit is 50,000.
    pub max_lines: u64,
    /// Largest file size in bytes; OpenAI's limit is 200 MB.
    pub max_bytes: u64,
    /// The endpoint the batch will be created for. When `None`, the first line whose `url` is a
    /// Batch API endpoint decides.
    pub expected_endpoint: Option<Endpoint>,
    /// Models the Batch API accepts, matched exactly against `body.model`; a model not in the set
    /// is `model_not_found`. `None` accepts any model.
    pub known_models: Option<HashSet<String>>,
    /// Whether to estimate prompt tokens (see [`TokenEstimator`](crate::TokenEstimator)); this
    /// costs a BPE pass over every text part, so it is off unless asked for.
    pub estimate_tokens: bool,
    /// Longest line held and checked, newline included (default 4 MiB). A longer line is a
    /// `line_too_large` problem on its line, read past without being held, so memory stays
    /// bounded whatever the input: the default keeps `batch validate` under 64 MB at its peak.
    /// OpenAI does not document a limit per line (a request's inline images may total about
    /// 50 MB), so a file of requests with large inline images needs it raised.
    pub max_line_bytes: usize,
}

impl ValidationOptions {
    /// The `file_too_large` problem of a file of `bytes` bytes, if it is over
    /// [`max_bytes`](Self::max_bytes): a caller that knows the size before reading (a file's
    /// metadata) can say so at once. Validation reports the same problem at the end.
    pub fn file_size_problem(&self, bytes: u64) -> Option<Problem> {
        (bytes > self.max_bytes).then(|| {
            Problem::file(
                ProblemCode::FileTooLarge,
                format!(
                    "File is too large: {bytes} bytes; a batch input file may be at most {} bytes.",
                    self.max_bytes
                ),
            )
        })
    }
}

impl Default for ValidationOptions {
    fn default() -> Self {
        ValidationOptions {
            max_lines: 50_000,
            max_bytes: 200 * 1024 * 1024,
            expected_endpoint: None,
            known_models: None,
            estimate_tokens: false,
            max_line_bytes: MAX_LINE_BYTES,
        }
    }
}
