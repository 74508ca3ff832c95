//! The one error type of providers.

use std::time::Duration;

use crate::Tier;

/// Everything a provider call or the factory can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The HTTP client failed: an error status from OpenAI or a transport failure.
    #[error("{tier} call failed: {source}")]
    Client {
        /// The tier that made the call.
        tier: Tier,
        /// What batch-client said (never holds the API key).
        #[source]
        source: batch_client::Error,
    },
    /// The model refused the request (an OpenAI error body with a status), without HTTP: the
    /// simulated models, or a batch line that came back as an error.
    #[error("{tier} call refused: HTTP {status}: {message}")]
    Refused {
        /// The tier that made the call.
        tier: Tier,
        /// The status the model answered with.
        status: u16,
        /// OpenAI's error code, when there is one.
        code: Option<String>,
        /// OpenAI's error message (or the raw body).
        message: String,
    },
    /// A call took longer than its tier allows.
    #[error("{tier} call timed out after {after:?}")]
    Timeout {
        /// The tier that made the call.
        tier: Tier,
        /// The limit.
        after: Duration,
    },
    /// A successful answer that does not say what the request asked for.
    #[error("unexpected {what}: {message}; body: {body}")]
    Decode {
        /// What was being read (`chat completion`, `judgement`, ...).
        what: &'static str,
        /// Why it could not be read.
        message: String,
        /// The raw text (at most 4 KiB of it).
        body: String,
    },
    /// The request itself is unusable (an alpha outside 0-1, an empty image...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The batch queue could not deliver a result (after its retries and, when on, the
    /// standard fallback).
    #[error("batch tier: {0}")]
    Queue(#[source] batch_queue::Error),
    /// The request cache could not read or write its store or its files.
    #[error("request cache: {0}")]
    Cache(String),
    /// Configuration is invalid, or a tier was asked for without what it needs.
    #[error("configuration: {0}")]
    Config(#[from] crate::ConfigError),
}

impl ProviderError {
    /// The HTTP status, when the model or the API answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProviderError::Client { source, .. } => source.status(),
            ProviderError::Refused { status, .. } => Some(*status),
            ProviderError::Queue(e) => e.status(),
            _ => None,
        }
    }

    /// Whether the failure is a rate limit (429) or a timeout: what makes flex fall back.
    pub fn is_busy_or_slow(&self) -> bool {
        match self {
            ProviderError::Timeout { .. } => true,
            ProviderError::Client { source, .. } => {
                source.status() == Some(429)
                    || matches!(
                        source,
                        batch_client::Error::Transport {
                            kind: "timeout",
                            ..
                        }
                    )
            }
            ProviderError::Refused { status, .. } => *status == 429,
            _ => false,
        }
    }

    pub(crate) fn decode(what: &'static str, message: impl Into<String>, body: &str) -> Self {
        let mut end = body.len().min(4096);
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        ProviderError::Decode {
            what,
            message: message.into(),
            body: body[..end].to_owned(),
        }
    }
}

/// The result type of providers.
pub type Result<T, E = ProviderError> = std::result::Result<T, E>;
