//! Client configuration: base URL, the API key (kept secret), organisation and project headers,
//! timeouts and the retry policy.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// OpenAI's base URL, the default of `OPENAI_BASE_URL` (read by the settings module of
/// providers, like every variable).
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The API key. Its `Debug` and `Display` print `[REDACTED]`; it is never logged, stored or put
/// into an error.
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(SecretString::from(key.into()))
    }

    /// The key itself, for the `Authorization` header only.
    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether there is no key at all (requests are then refused before they are sent).
    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().trim().is_empty()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// How failed requests are retried: jittered exponential backoff on 429, 5xx, timeouts and
/// connection errors, never on other 4xx.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
    /// The most a `Retry-After` / `retry-after-ms` header may make us wait.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 6,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_retries: 0,
        min_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        max_retry_after: Duration::ZERO,
    };

    /// Short delays, for tests against a local server.
    pub fn fast() -> RetryPolicy {
        RetryPolicy {
            max_retries: 8,
            min_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(20),
            max_retry_after: Duration::from_millis(20),
        }
    }

    pub(crate) fn backoff(&self) -> backon::ExponentialBuilder {
        backon::ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay.max(self.min_delay))
            .with_max_times(self.max_retries)
    }
}

/// A failed request that is about to be tried again, as [`ClientConfig::with_retry_notice`]
/// reports it. It holds the error's text (method, path, status or transport failure, never the
/// key or a header).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryNotice {
    /// What failed, e.g. `GET /batches/batch_…: connect: … Connection refused`.
    pub error: String,
    /// The attempt that failed, from 1.
    pub attempt: usize,
    /// The most attempts that will be made (the first and every retry).
    pub attempts: usize,
    /// How long until the next one.
    pub delay: Duration,
}

impl fmt::Display for RetryNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attempt {} of {} failed: {}; next try in {:.1} s",
            self.attempt,
            self.attempts,
            self.error,
            self.delay.as_secs_f64()
        )
    }
}

/// Called before every retry with what failed and when the next try is (see
/// [`ClientConfig::with_retry_notice`]).
#[derive(Clone)]
pub struct RetryHook(Arc<dyn Fn(&RetryNotice) + Send + Sync>);

impl RetryHook {
    /// Wraps `f`.
    pub fn new(f: impl Fn(&RetryNotice) + Send + Sync + 'static) -> RetryHook {
        RetryHook(Arc::new(f))
    }

    pub(crate) fn call(&self, notice: &RetryNotice) {
        (self.0)(notice)
    }
}

impl fmt::Debug for RetryHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RetryHook")
    }
}

/// Everything the HTTP client needs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The API key.
    pub api_key: ApiKey,
    /// Sent as `OpenAI-Organization` when set.
    pub organization: Option<String>,
    /// Sent as `OpenAI-Project` when set.
    pub project: Option<String>,
    /// Timeout of a whole request (uploads and downloads get [`ClientConfig::transfer_timeout`]).
    pub timeout: Duration,
    /// Timeout of uploads and downloads.
    pub transfer_timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Told about every retry, before its wait (besides a `warn` tracing event).
    pub on_retry: Option<RetryHook>,
}

impl ClientConfig {
    /// A configuration for `base_url` and `api_key` with default timeouts and retries.
    pub fn new(base_url: impl Into<String>, api_key: ApiKey) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            api_key,
            organization: None,
            project: None,
            timeout: Duration::from_secs(120),
            transfer_timeout: Duration::from_secs(3600),
            connect_timeout: Duration::from_secs(15),
            retry: RetryPolicy::default(),
            on_retry: None,
        }
    }

    /// Sets the organisation header.
    pub fn with_organization(mut self, org: impl Into<String>) -> ClientConfig {
        self.organization = Some(org.into());
        self
    }

    /// Sets the project header.
    pub fn with_project(mut self, project: impl Into<String>) -> ClientConfig {
        self.project = Some(project.into());
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> ClientConfig {
        self.retry = retry;
        self
    }

    /// Calls `hook` before every retry with what failed, the attempt and the wait, e.g. to
    /// tell a user why nothing seems to happen.
    pub fn with_retry_notice(mut self, hook: RetryHook) -> ClientConfig {
        self.on_retry = Some(hook);
        self
    }

    /// Sets the request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.timeout = timeout;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_redacted_in_debug_and_display() {
        let config = ClientConfig::new("http://x/v1/", ApiKey::new("sk-secret-123"));
        let dbg = format!("{config:?} {}", config.api_key);
        assert!(!dbg.contains("sk-secret-123"), "{dbg}");
        assert!(dbg.contains("REDACTED"));
        assert_eq!(config.base_url, "http://x/v1");
    }
}
