//! The one error type of batch-client.

use std::fmt;

use batch_format::Problem;

/// OpenAI's error envelope, `{"error": {"message", "type", "param", "code"}}`, read liberally.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenAiErrorBody {
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
    /// Error type, e.g. `invalid_request_error`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The offending parameter, when there is one.
    #[serde(default)]
    pub param: Option<String>,
    /// Machine-readable code, e.g. `rate_limit_exceeded` (numbers kept as text).
    #[serde(default, deserialize_with = "string_or_number")]
    pub code: Option<String>,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::Deserialize;
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

impl OpenAiErrorBody {
    /// Reads the `error` member of a response body; `None` when the body is not an envelope.
    pub fn parse(body: &str) -> Option<OpenAiErrorBody> {
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: OpenAiErrorBody,
        }
        serde_json::from_str::<Envelope>(body).ok().map(|e| e.error)
    }
}

/// An error answer from OpenAI: the status, OpenAI's error object and the raw body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP method.
    pub method: String,
    /// Path below the base URL, e.g. `/batches`.
    pub path: String,
    /// HTTP status.
    pub status: u16,
    /// OpenAI's error object, when the body was an error envelope.
    pub error: Option<OpenAiErrorBody>,
    /// The raw body (at most 64 KiB of it).
    pub body: String,
    /// `Retry-After` / `retry-after-ms`, when sent.
    pub retry_after: Option<std::time::Duration>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: HTTP {}{}",
            self.method,
            self.path,
            self.status,
            describe(&self.error)
        )
    }
}

/// What a step of [`crate::BatchJobManager::submit_batch`] is, for failpoints and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubmitStep {
    /// The intent record was written; nothing was uploaded.
    AfterIntent,
    /// The input file was uploaded and its id stored.
    AfterUpload,
    /// The create request was answered, but its batch id is not stored yet.
    AfterCreateSent,
    /// The batch id was stored.
    AfterCreateStored,
}

impl fmt::Display for SubmitStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SubmitStep::AfterIntent => "after intent",
            SubmitStep::AfterUpload => "after upload",
            SubmitStep::AfterCreateSent => "after create sent",
            SubmitStep::AfterCreateStored => "after create stored",
        })
    }
}

/// Everything that can go wrong talking to OpenAI or keeping batch records.
///
/// Never holds the API key, nor a `reqwest::Error` in its public shape: transport failures are
/// kept as text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// OpenAI answered with an error status.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The request never got an HTTP answer: connection refused or reset, timeout, or the body
    /// stream broke.
    #[error("{method} {path}: {kind}: {message}")]
    Transport {
        /// HTTP method.
        method: String,
        /// Path below the base URL.
        path: String,
        /// `timeout`, `connect`, `body` or `request`.
        kind: &'static str,
        /// What reqwest said (with the URL, never the key).
        message: String,
    },
    /// A download ended before `Content-Length` bytes arrived.
    #[error("download of {file_id} truncated: {received} of {expected} bytes")]
    Truncated {
        /// The file downloaded.
        file_id: String,
        /// Bytes received.
        received: u64,
        /// `Content-Length`.
        expected: u64,
    },
    /// A 2xx response whose body is not what the spec says.
    #[error("{method} {path}: unexpected response body: {message}; body: {body}")]
    Decode {
        /// HTTP method.
        method: String,
        /// Path below the base URL.
        path: String,
        /// The parse error.
        message: String,
        /// The raw body (at most 64 KiB of it).
        body: String,
    },
    /// Configuration is missing or unusable (e.g. no `OPENAI_API_KEY`).
    #[error("configuration: {0}")]
    Config(String),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The batch input is not valid; every problem found, with its line.
    #[error("invalid batch input: {} problem(s), first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    InvalidInput(Vec<Problem>),
    /// The durable store failed: the database (the sqlx error is the source), a row that does
    /// not read back, or its migrations.
    #[error("store: {source}")]
    Store {
        /// What failed.
        #[source]
        source: BoxError,
    },
    /// A blocking task (file writer, validator, splitter, result reader) panicked or was
    /// cancelled.
    #[error("{what} task: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// How it ended.
        #[source]
        source: tokio::task::JoinError,
    },
    /// A database that should exist does not (commands that only read never create one).
    #[error(
        "no batch database at {0}: the file does not exist (nothing was ever submitted with it; is the path right?)"
    )]
    NoDatabase(String),
    /// No record with this id (ours or OpenAI's batch id).
    #[error("no batch record '{0}'")]
    NotFound(String),
    /// The record is not in a state that allows the operation.
    #[error("batch record '{id}' is {state}: {reason}")]
    InvalidState {
        /// Our record id.
        id: String,
        /// Its state.
        state: String,
        /// Why the operation cannot run.
        reason: String,
    },
    /// batch-format failed (reading or writing JSONL).
    #[error(transparent)]
    Format(#[from] batch_format::Error),
    /// Another process holds the record's lease and is carrying it on.
    #[error("batch record '{0}' is being carried on by another process")]
    Busy(String),
    /// A test-only failpoint fired: the manager stopped as if the process had died.
    #[error("failpoint: stopped {0}")]
    Failpoint(SubmitStep),
}

fn describe(error: &Option<OpenAiErrorBody>) -> String {
    let Some(e) = error else {
        return String::new();
    };
    let mut s = String::new();
    if let Some(kind) = &e.kind {
        s.push_str(&format!(" {kind}"));
    }
    if let Some(code) = &e.code {
        s.push_str(&format!(" ({code})"));
    }
    if let Some(message) = &e.message {
        s.push_str(&format!(": {message}"));
    }
    if let Some(param) = &e.param {
        s.push_str(&format!(" [param {param}]"));
    }
    s
}

impl Error {
    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(e) => Some(e.status),
            _ => None,
        }
    }

    /// OpenAI's error code, for API errors that carry one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api(e) => e.error.as_ref()?.code.as_deref(),
            _ => None,
        }
    }

    /// Whether trying again may succeed: 429, 5xx, timeouts, connection errors and truncated
    /// downloads. Other 4xx never are.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api(e) => e.status == 429 || e.status == 408 || e.status >= 500,
            Error::Transport { .. } | Error::Truncated { .. } => true,
            _ => false,
        }
    }

    /// The delay the server asked for, when it did.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Api(e) => e.retry_after,
            _ => None,
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// A store error with `e` as its source.
    pub(crate) fn store(e: impl Into<BoxError>) -> Error {
        Error::Store { source: e.into() }
    }

    /// A blocking task `what` that did not finish.
    pub(crate) fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Error {
        move |source| Error::Task { what, source }
    }
}

/// Any error, boxed: the source of [`Error::Store`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of batch-client.
pub type Result<T, E = Error> = std::result::Result<T, E>;
