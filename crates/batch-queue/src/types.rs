//! The queue's public data: configuration, requests, ids, tiers and results.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use batch_format::{ChatCompletionRequest, Endpoint, ImageGenerationRequest, Usage};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// OpenAI's most lines per batch input file, and so the largest group.
pub const MAX_GROUP_SIZE: usize = 50_000;

/// How the queue groups, flushes and recovers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// A group (endpoint, model) is submitted as soon as it holds this many pending requests.
    /// Default 10,000; at most [`MAX_GROUP_SIZE`].
    pub max_group_size: usize,
    /// A group is submitted this long after its oldest pending request was queued, if no
    /// `flush()` came first. `None` (the default): only at `flush()` or `max_group_size`.
    pub flush_delay: Option<Duration>,
    /// How long a stage barrier's [`flush_soon`](crate::BatchRequestQueue::flush_soon) may hold
    /// the pending requests back for other sessions to add theirs: they go once no request has
    /// been enqueued for a tenth of this, or this long after the first barrier asked, whichever
    /// comes first. `None` (the default): at once, as [`flush`](crate::BatchRequestQueue::flush).
    pub coalesce: Option<Duration>,
    /// How many later batches may carry a request that failed, expired or was cancelled.
    /// Default 1.
    pub max_retries: u32,
    /// After the retries, send the request to the standard (synchronous, full-price) API instead
    /// of handing the error to the caller. Default `true` (`BATCH_FALLBACK_TO_STANDARD`).
    pub fallback_to_standard: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_group_size: 10_000,
            flush_delay: None,
            coalesce: None,
            max_retries: 1,
            fallback_to_standard: true,
        }
    }
}

impl QueueConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.max_group_size == 0 || self.max_group_size > MAX_GROUP_SIZE {
            return Err(Error::Config(format!(
                "max_group_size must be 1 to {MAX_GROUP_SIZE}, got {}",
                self.max_group_size
            )));
        }
        if self.flush_delay == Some(Duration::ZERO) {
            return Err(Error::Config(
                "flush_delay must be positive (None turns it off)".into(),
            ));
        }
        if self.coalesce == Some(Duration::ZERO) {
            return Err(Error::Config(
                "coalesce must be positive (None turns it off)".into(),
            ));
        }
        Ok(())
    }
}

/// One request to carry, typed for the endpoints batchbeam uses.
#[derive(Debug, Clone, PartialEq)]
// Unboxed so callers can build it directly; one request at a time is moved, never a slice.
#[allow(clippy::large_enum_variant)]
pub enum QueuedRequest {
    /// `POST /v1/chat/completions`.
    Chat(ChatCompletionRequest),
    /// `POST /v1/images/generations`.
    Image(ImageGenerationRequest),
    /// Any other batch endpoint, with its body as JSON.
    Raw {
        /// The endpoint.
        endpoint: Endpoint,
        /// The request body.
        body: serde_json::Map<String, serde_json::Value>,
    },
}

impl QueuedRequest {
    /// The endpoint the request goes to.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            QueuedRequest::Chat(_) => Endpoint::ChatCompletions,
            QueuedRequest::Image(_) => Endpoint::ImagesGenerations,
            QueuedRequest::Raw { endpoint, .. } => *endpoint,
        }
    }

    /// The model named in the body, if any.
    pub fn model(&self) -> Option<&str> {
        match self {
            QueuedRequest::Chat(r) => Some(&r.model),
            QueuedRequest::Image(r) => r.model.as_deref(),
            QueuedRequest::Raw { body, .. } => body.get("model").and_then(|m| m.as_str()),
        }
    }
}

/// A request's stable id (`rq_` and a lowercase ULID); it is also the request's `custom_id`
/// in every batch that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(String);

impl RequestId {
    pub(crate) fn new() -> RequestId {
        RequestId(format!(
            "rq_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ))
    }

    /// The id of the request enqueued under `key` with [`BatchRequestQueue::enqueue_keyed`]:
    /// `rq_k` and 32 hex digits of the key's SHA-256, the same in every process.
    ///
    /// [`BatchRequestQueue::enqueue_keyed`]: crate::BatchRequestQueue::enqueue_keyed
    pub fn for_key(key: &str) -> RequestId {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(key.as_bytes());
        let mut id = String::with_capacity(36);
        id.push_str("rq_k");
        for byte in &digest[..16] {
            id.push_str(&format!("{byte:02x}"));
        }
        RequestId(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for RequestId {
    fn from(s: String) -> Self {
        RequestId(s)
    }
}

impl From<&str> for RequestId {
    fn from(s: &str) -> Self {
        RequestId(s.to_owned())
    }
}

/// How a call reached the model. The queue itself carries a request by [`Tier::Batch`] or, as
/// a fallback, [`Tier::Standard`]; the other two are the providers' synchronous tiers, so that one
/// type names every tier from this layer up (providers re-exports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Synchronous, full price.
    Standard,
    /// Synchronous with `service_tier: "flex"`: discounted, slower, may be refused.
    Flex,
    /// OpenAI's Batch API through the batch queue: half price, up to 24 h.
    Batch,
    /// The simulated models of openai-sim, in process: no network, no cost.
    Simulated,
}

impl Tier {
    /// Every tier, in price order (most expensive first), then the simulated one.
    pub const ALL: [Tier; 4] = [Tier::Standard, Tier::Flex, Tier::Batch, Tier::Simulated];

    /// The name used in configuration, the database and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "standard",
            Tier::Flex => "flex",
            Tier::Batch => "batch",
            Tier::Simulated => "simulated",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tier name that names no [`Tier`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tier '{0}' (expected one of: standard, flex, batch, simulated)")]
pub struct UnknownTier(pub String);

impl FromStr for Tier {
    type Err = UnknownTier;

    /// Parses a tier name, case and surrounding spaces ignored; an unknown name is an error
    /// that names it.
    fn from_str(s: &str) -> std::result::Result<Tier, UnknownTier> {
        let name = s.trim().to_ascii_lowercase();
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| UnknownTier(s.to_owned()))
    }
}

/// A request's successful result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completed {
    /// The request.
    pub request_id: RequestId,
    /// The endpoint's response body (a chat completion, an image response, ...).
    pub body: serde_json::Value,
    /// Token usage from the body, when it has one.
    pub usage: Option<Usage>,
    /// The tier that carried it.
    pub tier: Tier,
    /// Batches that carried it, plus one if the standard API finally did.
    pub attempts: u32,
    /// OpenAI batch ids of every batch that carried it, in order.
    pub batch_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_read_back_their_names_and_an_unknown_one_is_named() {
        for tier in Tier::ALL {
            assert_eq!(tier.as_str().parse::<Tier>(), Ok(tier));
            assert_eq!(serde_json::to_string(&tier).unwrap(), format!("\"{tier}\""));
        }
        assert_eq!(" Batch ".parse::<Tier>(), Ok(Tier::Batch));
        let err = "turbo".parse::<Tier>().unwrap_err();
        assert!(err.to_string().contains("'turbo'"), "{err}");
    }
}
