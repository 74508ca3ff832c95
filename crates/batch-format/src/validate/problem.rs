//! The problems a validation reports, shaped like the entries of a failed batch's
//! `errors.data[]`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What is wrong, in OpenAI's words: [`ProblemCode::as_str`] is the `code` of an
/// `errors.data[]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemCode {
    /// The line is not valid JSON (or not UTF-8, or blank in the middle of the file).
    InvalidJsonLine,
    /// `custom_id`, `method`, `url` or `body` is missing or null.
    MissingRequiredParameter,
    /// `method` is not `"POST"`.
    InvalidMethod,
    /// `url` is not the batch's endpoint (or not a Batch API endpoint at all).
    InvalidUrl,
    /// `body.model` differs from the model of the batch's first request.
    MismatchedModel,
    /// The `custom_id` was already used by an earlier line.
    DuplicateCustomId,
    /// `body.stream` is `true`.
    StreamingUnsupported,
    /// The file has more lines than
    /// [`ValidationOptions::max_lines`](crate::ValidationOptions::max_lines).
    TooManyLines,
    /// The file has more bytes than
    /// [`ValidationOptions::max_bytes`](crate::ValidationOptions::max_bytes).
    FileTooLarge,
    /// The file has no request lines.
    EmptyFile,
    /// The request is malformed in another way: the line or body is not an object, `body.model`
    /// or `body.messages` is missing, `custom_id` is empty or not a string.
    InvalidRequest,
    /// `body.model` is not in
    /// [`ValidationOptions::known_models`](crate::ValidationOptions::known_models).
    ModelNotFound,
    /// The line is longer than the streaming validators hold (4 MiB, newline included): it
    /// was read past without being checked. This code is the validator's own, not OpenAI's.
    LineTooLarge,
}

impl ProblemCode {
    /// The OpenAI-style snake_case code, e.g. `"invalid_json_line"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProblemCode::InvalidJsonLine => "invalid_json_line",
            ProblemCode::MissingRequiredParameter => "missing_required_parameter",
            ProblemCode::InvalidMethod => "invalid_method",
            ProblemCode::InvalidUrl => "invalid_url",
            ProblemCode::MismatchedModel => "mismatched_model",
            ProblemCode::DuplicateCustomId => "duplicate_custom_id",
            ProblemCode::StreamingUnsupported => "streaming_unsupported",
            ProblemCode::TooManyLines => "too_many_lines",
            ProblemCode::FileTooLarge => "file_too_large",
            ProblemCode::EmptyFile => "empty_file",
            ProblemCode::InvalidRequest => "invalid_request",
            ProblemCode::ModelNotFound => "model_not_found",
            ProblemCode::LineTooLarge => "line_too_large",
        }
    }
}

impl fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem in an input file, shaped like an entry of a failed batch's `errors.data[]`
/// (serialises as `{code, message, param, line}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// What kind of problem.
    pub code: ProblemCode,
    /// Human-readable explanation; OpenAI's wording where it is known.
    pub message: String,
    /// The offending parameter, e.g. `custom_id` or `body.model`.
    pub param: Option<String>,
    /// 1-based line number, or `None` for problems with the whole file.
    pub line: Option<u64>,
}

impl Problem {
    pub(super) fn at(
        line: u64,
        code: ProblemCode,
        param: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            code,
            message: message.into(),
            param: param.map(str::to_owned),
            line: Some(line),
        }
    }

    pub(super) fn file(code: ProblemCode, message: String) -> Self {
        Problem {
            code,
            message,
            param: None,
            line: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: ")?,
            None => f.write_str("file: ")?,
        }
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// OpenAI's message for a line that is not JSON (or blank in the middle of the file).
pub(super) const MSG_INVALID_JSON: &str = "This line is not parseable as valid JSON.";
