//! What the reader makes of the lines of an output or error file: an outcome per request,
//! owned or borrowed, and a problem per unreadable line.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::usage::Usage;

/// What happened to one request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// The endpoint answered with a 2xx status; `body` is its response body.
    Succeeded {
        /// HTTP status, 200 in practice.
        status: u16,
        /// `response.request_id` (32 hex digits on OpenAI).
        request_id: Option<String>,
        /// The response body exactly as it appeared in the line.
        body: RawJson,
        /// `body.usage`, when present and readable.
        usage: Option<Usage>,
    },
    /// The endpoint answered with an error status (4xx/5xx, or anything not 2xx). These lines
    /// go to the error file.
    HttpError {
        /// HTTP status, e.g. 400 or 429.
        status: u16,
        /// `response.request_id`.
        request_id: Option<String>,
        /// `body.error`, read liberally; fields that are absent or oddly typed are `None`.
        error: ApiErrorBody,
        /// The response body exactly as it appeared in the line.
        body: RawJson,
    },
    /// The request never got a response: `response` is null and `error` says why, e.g.
    /// `batch_expired`.
    Failed {
        /// `error.code`, e.g. `batch_expired`; empty when absent.
        code: String,
        /// `error.message`; empty when absent.
        message: String,
    },
}

impl Outcome {
    /// Whether the request succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Succeeded { .. })
    }

    /// Token usage of a successful request.
    pub fn usage(&self) -> Option<&Usage> {
        match self {
            Outcome::Succeeded { usage, .. } => usage.as_ref(),
            _ => None,
        }
    }
}

/// A JSON value kept as the text it was read from, which is known to be valid JSON.
///
/// Not a `Box<RawValue>`: serde_json can only build one by parsing the text again, and the
/// reader has already checked it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RawJson(Box<str>);

impl RawJson {
    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }

    /// Deserialises the value, e.g. into a `serde_json::Value` or a typed response.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> serde_json::Result<T> {
        serde_json::from_str(&self.0)
    }

    /// The same text as a serde_json `RawValue` (this parses it once more).
    ///
    /// # Panics
    ///
    /// Never for a `RawJson` the reader made. One made by [`OutcomeRef::to_outcome`] from an
    /// `OutcomeRef` built by hand holds whatever body it was given, which must be valid JSON.
    #[allow(
        clippy::expect_used,
        reason = "a RawJson holds text the reader checked as one JSON value, or an OutcomeRef \
                  body, which its docs require to be valid JSON"
    )]
    pub fn to_raw_value(&self) -> Box<RawValue> {
        RawValue::from_string(self.0.to_string()).expect("RawJson holds valid JSON")
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawJson({})", self.0)
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `error` object of an OpenAI error body: `{"error": {message, type, param, code}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApiErrorBody {
    /// Human-readable message.
    pub message: Option<String>,
    /// Error type, e.g. `invalid_request_error` or `insufficient_quota`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The offending parameter, e.g. `max_tokens`.
    pub param: Option<String>,
    /// Machine-readable code, e.g. `rate_limit_exceeded` (numbers are kept as text).
    pub code: Option<String>,
}

/// One readable line of an output or error file.
#[derive(Debug, Clone)]
pub struct OutcomeLine {
    /// 1-based line number in the file.
    pub line: u64,
    /// The line's `id` (`batch_req_…`).
    pub id: Option<String>,
    /// The `custom_id` of the request this line answers.
    pub custom_id: String,
    /// What happened.
    pub outcome: Outcome,
}

/// A readable line of an output or error file as
/// [`read_output_parallel_ref`](crate::read_output_parallel_ref) lends it: an [`OutcomeLine`]
/// whose strings borrow from the block of the file being read.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeLineRef<'a> {
    /// 1-based line number in the file.
    pub line: u64,
    /// The line's `id` (`batch_req_…`).
    pub id: Option<&'a str>,
    /// The `custom_id` of the request this line answers.
    pub custom_id: &'a str,
    /// What happened.
    pub outcome: OutcomeRef<'a>,
}

impl OutcomeLineRef<'_> {
    /// The same line, owning its strings.
    pub fn to_line(&self) -> OutcomeLine {
        OutcomeLine {
            line: self.line,
            id: self.id.map(str::to_owned),
            custom_id: self.custom_id.to_owned(),
            outcome: self.outcome.to_outcome(),
        }
    }
}

/// What happened to one request, borrowed: an [`Outcome`] whose strings borrow from the file
/// being read.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum OutcomeRef<'a> {
    /// The endpoint answered with a 2xx status; `body` is its response body.
    Succeeded {
        /// HTTP status, 200 in practice.
        status: u16,
        /// `response.request_id`.
        request_id: Option<&'a str>,
        /// The response body exactly as it appeared in the line (valid JSON).
        body: &'a str,
        /// `body.usage`, when present and readable.
        usage: Option<Usage>,
    },
    /// The endpoint answered with an error status (4xx/5xx, or anything not 2xx).
    HttpError {
        /// HTTP status, e.g. 400 or 429.
        status: u16,
        /// `response.request_id`.
        request_id: Option<&'a str>,
        /// `body.error`, read liberally; fields that are absent or oddly typed are `None`.
        error: &'a ApiErrorBody,
        /// The response body exactly as it appeared in the line (valid JSON).
        body: &'a str,
    },
    /// The request never got a response: `response` is null and `error` says why.
    Failed {
        /// `error.code`, e.g. `batch_expired`; empty when absent.
        code: &'a str,
        /// `error.message`; empty when absent.
        message: &'a str,
    },
}

impl OutcomeRef<'_> {
    /// Whether the request succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, OutcomeRef::Succeeded { .. })
    }

    /// The same outcome, owning its strings.
    pub fn to_outcome(&self) -> Outcome {
        match *self {
            OutcomeRef::Succeeded {
                status,
                request_id,
                body,
                usage,
            } => Outcome::Succeeded {
                status,
                request_id: request_id.map(str::to_owned),
                body: RawJson(body.into()),
                usage,
            },
            OutcomeRef::HttpError {
                status,
                request_id,
                error,
                body,
            } => Outcome::HttpError {
                status,
                request_id: request_id.map(str::to_owned),
                error: error.clone(),
                body: RawJson(body.into()),
            },
            OutcomeRef::Failed { code, message } => Outcome::Failed {
                code: code.to_owned(),
                message: message.to_owned(),
            },
        }
    }
}

/// What is wrong with an unreadable line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LineProblemKind {
    /// Not UTF-8, not JSON, or not a JSON object.
    InvalidJson,
    /// `custom_id` is missing, null or not a string.
    MissingCustomId,
    /// Both `response` and `error` are missing or null.
    NoOutcome,
    /// `response` is not an object or has no usable `status_code`.
    InvalidResponse,
    /// `error` is not an object.
    InvalidError,
}

impl LineProblemKind {
    /// Snake-case name, e.g. `"invalid_json"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LineProblemKind::InvalidJson => "invalid_json",
            LineProblemKind::MissingCustomId => "missing_custom_id",
            LineProblemKind::NoOutcome => "no_outcome",
            LineProblemKind::InvalidResponse => "invalid_response",
            LineProblemKind::InvalidError => "invalid_error",
        }
    }
}

/// A line of an output or error file that could not be read as an outcome. It carries the raw
/// line, which is the first thing anyone debugging it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineProblem {
    /// 1-based line number in the file.
    pub line: u64,
    /// What is wrong.
    pub kind: LineProblemKind,
    /// The line's `custom_id`, when it could be read.
    pub custom_id: Option<String>,
    /// Explanation.
    pub message: String,
    /// The line as read, without its line ending (invalid UTF-8 replaced).
    pub raw: String,
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)?;
        if let Some(id) = &self.custom_id {
            write!(f, " (custom_id '{id}')")?;
        }
        Ok(())
    }
}

impl std::error::Error for LineProblem {}
