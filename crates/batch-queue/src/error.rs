//! The one error type of batch-queue.

use crate::{RequestId, Tier};

/// What went wrong with the queue or with one request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request itself failed on its last tier and no other tier was left to try: OpenAI's
    /// status, code and message are kept as they came (`status` is `None` when the request never
    /// got an HTTP answer, e.g. `batch_expired`).
    #[error("request {id} failed on the {tier} tier after {attempts} attempt(s): {}{}{message}",
        .status.map(|s| format!("HTTP {s} ")).unwrap_or_default(),
        .code.as_ref().map(|c| format!("[{c}] ")).unwrap_or_default())]
    Request {
        /// The request.
        id: RequestId,
        /// The tier of the last attempt.
        tier: Tier,
        /// Batch attempts plus a standard attempt, if any.
        attempts: u32,
        /// OpenAI's HTTP status, when it answered.
        status: Option<u16>,
        /// OpenAI's error code (`invalid_request_error`, `batch_expired`, ...).
        code: Option<String>,
        /// OpenAI's message, or ours when OpenAI gave none.
        message: String,
    },
    /// The request cannot be queued (no model, an empty prompt, ...); nothing was stored.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The configuration is out of range.
    #[error("invalid queue configuration: {0}")]
    Config(String),
    /// No request with this id is known to the queue's database.
    #[error("unknown request id {0}")]
    UnknownRequest(RequestId),
    /// The queue was dropped before the request finished; its result stays in the database and
    /// [`crate::BatchRequestQueue::result_for`] hands it out after a restart.
    #[error("the queue closed before request {0} finished; ask result_for after resume")]
    Closed(RequestId),
    /// batch-client failed (HTTP, store, submit).
    #[error(transparent)]
    Client(#[from] batch_client::Error),
    /// batch-format rejected a request or a file.
    #[error(transparent)]
    Format(#[from] batch_format::Error),
    /// The queue's own tables failed (the sqlx error, or what did not read back, is the
    /// source).
    #[error("queue store: {source}")]
    Store {
        /// What failed.
        #[source]
        source: batch_client::BoxError,
    },
    /// A task of the queue (result reader, standard-API call) panicked or was cancelled.
    #[error("{what} task: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// How it ended.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl Error {
    /// A store error with `e` as its source.
    pub(crate) fn store(e: impl Into<batch_client::BoxError>) -> Error {
        Error::Store { source: e.into() }
    }

    /// A task `what` that did not finish.
    pub(crate) fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Error {
        move |source| Error::Task { what, source }
    }

    /// OpenAI's HTTP status for a request's own failure.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Request { status, .. } => *status,
            Error::Client(e) => e.status(),
            _ => None,
        }
    }

    /// OpenAI's error code for a request's own failure.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Request { code, .. } => code.as_deref(),
            Error::Client(e) => e.code(),
            _ => None,
        }
    }
}

/// `Result` with batch-queue's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
